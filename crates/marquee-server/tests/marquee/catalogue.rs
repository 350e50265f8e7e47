//! The catalogue endpoints against the demo catalogue.

use marquee_persistence::Backend;
use serde_json::Value;

use crate::helpers::TestApp;
use crate::on_each_backend;

async fn lists_concerts_a_page_at_a_time(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let (status, first) = app.get_json("/api/v1/concerts").await;
    assert_eq!(status, 200);
    assert_eq!(first["page"], 0);
    assert_eq!(first["size"], 20);
    assert_eq!(first["total"], 120);
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert_eq!(items[0]["id"], 1);
    for field in ["title", "artist", "venue", "description"] {
        assert!(items[0][field].is_string(), "{field} missing");
    }

    let (_, last) = app.get_json("/api/v1/concerts?page=4&size=24").await;
    let ids: Vec<i64> = last["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (97..=120).collect::<Vec<_>>());

    let (_, past_the_end) = app.get_json("/api/v1/concerts?page=50&size=100").await;
    assert_eq!(past_the_end["items"], Value::Array(vec![]));
    assert_eq!(past_the_end["total"], 120);
}

async fn shows_one_concert(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, concert) = app.get_json("/api/v1/concerts/7").await;
    assert_eq!(status, 200);
    assert_eq!(concert["id"], 7);
    let (_, listed) = app.get_json("/api/v1/concerts?page=0&size=7").await;
    assert_eq!(listed["items"][6], concert, "detail and listing agree");
}

/// On `schedule`: seat 1 is held (a live hold), seat 2 sold, and seat 3 held by a hold that
/// ran out, which must count as available.
fn hold_sell_and_expire(app: &TestApp, schedule: i64) {
    app.db.execute(&format!(
        "UPDATE seats SET status = 'HELD', held_by = 9, held_until = '2999-01-01 00:00:00' WHERE schedule_id = {schedule} AND number = 1;
         UPDATE seats SET status = 'SOLD' WHERE schedule_id = {schedule} AND number = 2;
         UPDATE seats SET status = 'HELD', held_by = 9, held_until = '2000-01-01 00:00:00' WHERE schedule_id = {schedule} AND number = 3;",
    ));
}

async fn lists_schedules_with_seat_counts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    hold_sell_and_expire(&app, 1);

    let schedules = app.get_array("/api/v1/concerts/1/schedules").await;
    assert_eq!(schedules.len(), 4);
    let first = &schedules[0];
    assert_eq!(first["id"], 1);
    assert_eq!(first["concertId"], 1);
    assert_eq!(first["totalSeats"], 50);
    assert_eq!(first["availableSeats"], 48);
    assert_eq!(schedules[1]["availableSeats"], 50);
    let starts: Vec<&str> = schedules
        .iter()
        .map(|s| s["startsAt"].as_str().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "in start order");
    for s in &schedules {
        let opens = s["bookingOpensAt"].as_str().unwrap();
        let closes = s["bookingClosesAt"].as_str().unwrap();
        assert!(opens < closes && closes <= s["startsAt"].as_str().unwrap());
        assert!(opens.ends_with('Z'), "UTC, RFC 3339: {opens}");
    }
}

async fn lists_seats_by_status(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    hold_sell_and_expire(&app, 2);

    let all = app.get_array("/api/v1/schedules/2/seats").await;
    assert_eq!(all.len(), 50);
    let numbers: Vec<i64> = all.iter().map(|s| s["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, (1..=50).collect::<Vec<_>>());
    assert_eq!(all[0]["status"], "HELD");
    assert_eq!(all[1]["status"], "SOLD");
    assert_eq!(
        all[2]["status"], "AVAILABLE",
        "an expired hold reads as available"
    );
    assert!(
        all.iter()
            .all(|s| s["price"].as_i64().unwrap() > 0 && s["id"].is_i64())
    );

    for (filter, count) in [("available", 48), ("HELD", 1), ("sold", 1)] {
        let seats = app
            .get_array(&format!("/api/v1/schedules/2/seats?status={filter}"))
            .await;
        assert_eq!(seats.len(), count, "{filter}");
    }
}

async fn unknown_resources_are_404_problems(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        ("/api/v1/concerts/121", "concert-not-found"),
        ("/api/v1/concerts/9223372036854775807", "concert-not-found"),
        ("/api/v1/concerts/121/schedules", "concert-not-found"),
        ("/api/v1/schedules/100000/seats", "schedule-not-found"),
        ("/api/v1/nothing-here", "route-not-found"),
        ("/api/v1/concerts/1/extra/segments", "route-not-found"),
    ];
    app.assert_get_problems(404, &cases).await;
}

on_each_backend!(
    lists_concerts_a_page_at_a_time,
    shows_one_concert,
    lists_schedules_with_seat_counts,
    lists_seats_by_status,
    unknown_resources_are_404_problems,
);
