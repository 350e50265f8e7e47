//! The OpenAPI document is the contract: it declares every limit the server enforces, with
//! the server's own values, and the server accepts what the document allows up to its
//! bounds. A client that keeps to the document (schemathesis in `.ci/contract` is one) is
//! never refused for its input, and one that does not is.

use marquee_domain::{IdempotencyKey, PageRequest, SeatFilter, SeatStatus};
use marquee_persistence::Backend;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, test_settings};
use crate::on_each_backend;

/// The operation's parameter `name`.
fn parameter<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{method} {path} has parameters"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{method} {path} declares {name}"))
}

/// A regular expression that matches `word` in any letter case, as ECMA-262 (which has no
/// case-insensitive flag inside a pattern) spells it.
fn any_case(word: &str) -> String {
    word.chars()
        .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()))
        .collect()
}

async fn openapi_declares_the_enforced_limits(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, doc) = app.get_json("/api-docs/openapi.json").await;
    assert_eq!(status, 200);

    for (path, method, name) in [
        ("/api/v1/concerts/{concertId}", "get", "concertId"),
        ("/api/v1/concerts/{concertId}/schedules", "get", "concertId"),
        ("/api/v1/schedules/{scheduleId}/seats", "get", "scheduleId"),
        (
            "/api/v1/reservations/{reservationId}",
            "get",
            "reservationId",
        ),
        (
            "/api/v1/reservations/{reservationId}",
            "delete",
            "reservationId",
        ),
        (
            "/api/v1/reservations/{reservationId}/payment",
            "post",
            "reservationId",
        ),
    ] {
        let schema = &parameter(&doc, path, method, name)["schema"];
        assert_eq!(
            (&schema["minimum"], &schema["maximum"]),
            (&json!(1), &json!(i64::MAX)),
            "{method} {path}: {name} is a positive 64-bit integer"
        );
    }
    let seat_id = &doc["components"]["schemas"]["HoldRequest"]["properties"]["seatId"];
    assert_eq!(
        (&seat_id["minimum"], &seat_id["maximum"]),
        (&json!(1), &json!(i64::MAX))
    );

    let page = &parameter(&doc, "/api/v1/concerts", "get", "page")["schema"];
    assert_eq!(
        (&page["minimum"], &page["maximum"]),
        (&json!(0), &json!(PageRequest::MAX_PAGE))
    );
    let size = &parameter(&doc, "/api/v1/concerts", "get", "size")["schema"];
    assert_eq!(
        (&size["minimum"], &size["maximum"]),
        (&json!(1), &json!(PageRequest::MAX_SIZE))
    );

    let filters = [
        SeatFilter::Only(SeatStatus::Available),
        SeatFilter::Only(SeatStatus::Held),
        SeatFilter::Only(SeatStatus::Sold),
        SeatFilter::All,
    ];
    let names: Vec<String> = filters.iter().map(|f| any_case(f.name())).collect();
    let status = &parameter(
        &doc,
        "/api/v1/schedules/{scheduleId}/seats",
        "get",
        "status",
    );
    assert_eq!(
        status["schema"]["pattern"],
        format!("^({})$", names.join("|")),
        "status takes exactly the names SeatFilter::parse accepts"
    );

    for (path, method) in [
        ("/api/v1/wallet/charge", "post"),
        ("/api/v1/reservations/{reservationId}/payment", "post"),
    ] {
        let key = parameter(&doc, path, method, "Idempotency-Key");
        assert_eq!(
            (&key["in"], &key["required"]),
            (&json!("header"), &json!(true))
        );
        let schema = &key["schema"];
        assert_eq!(
            (
                &schema["minLength"],
                &schema["maxLength"],
                &schema["pattern"]
            ),
            (
                &json!(1),
                &json!(IdempotencyKey::MAX_LEN),
                &json!(format!("^[!-~]{{1,{}}}$", IdempotencyKey::MAX_LEN)),
            ),
            "{method} {path}: Idempotency-Key is 1 to 128 printable ASCII characters"
        );
    }

    // The document is static, so it declares the default of the configurable limit.
    let default_max_charge = test_settings("unused.sqlite3", &[]).booking.max_charge;
    let amount = &doc["components"]["schemas"]["ChargeRequest"]["properties"]["amount"];
    assert_eq!(
        (&amount["minimum"], &amount["maximum"]),
        (&json!(1), &json!(default_max_charge))
    );

    for (path, method) in [
        ("/api/v1/wallet/charge", "post"),
        ("/api/v1/reservations", "post"),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        for code in ["400", "401", "413", "415", "503"] {
            assert!(
                responses[code]["content"]["application/problem+json"].is_object(),
                "{method} {path} documents {code} as problem+json"
            );
        }
    }
}

/// The server takes what the document allows up to its declared bounds, and refuses one step
/// beyond them.
async fn the_declared_bounds_are_the_enforced_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let last = PageRequest::MAX_PAGE;
    let (status, _) = app
        .get_json(&format!("/api/v1/concerts?page={last}&size=100"))
        .await;
    assert_eq!(status, 200, "the last declared page");
    let past_last = app
        .get(&format!("/api/v1/concerts?page={}&size=1", last + 1))
        .await;
    assert_problem(past_last, 400, "invalid-page").await;

    let largest_id = app.get(&format!("/api/v1/concerts/{}", i64::MAX)).await;
    assert_problem(largest_id, 404, "concert-not-found").await;
    let past_largest_id = app.get("/api/v1/concerts/9223372036854775808").await;
    assert_problem(past_largest_id, 400, "invalid-id").await;

    let max = test_settings("unused.sqlite3", &[]).booking.max_charge;
    let token = app.token(41);
    let charge = |key: String, body: Value| {
        app.client
            .post(format!("{}/api/v1/wallet/charge", app.address))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let longest = "~".repeat(IdempotencyKey::MAX_LEN);
    for (key, body, expected) in [
        (longest.clone(), json!({ "amount": max }), 200),
        // JSON Schema counts 5.0 as the integer 5.
        ("!".to_owned(), json!({ "amount": 5.0 }), 200),
        ("a".to_owned(), json!({ "amount": 1 }), 200),
        ("b".to_owned(), json!({ "amount": max + 1 }), 400),
        ("c".to_owned(), json!({ "amount": 0 }), 400),
        ("d".to_owned(), json!({ "amount": 2.5 }), 400),
        (format!("{longest}~"), json!({ "amount": 1 }), 400),
        ("with space".to_owned(), json!({ "amount": 1 }), 400),
    ] {
        let response = charge(key.clone(), body.clone()).await.expect("sent");
        assert_eq!(
            response.status().as_u16(),
            expected,
            "charge {body} with key {key:?}"
        );
    }
    let wallet: Value = app
        .client
        .get(format!("{}/api/v1/wallet", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("a JSON body");
    assert_eq!(
        wallet["balance"],
        json!(max + 5 + 1),
        "only the accepted charges"
    );
}

on_each_backend!(
    openapi_declares_the_enforced_limits,
    the_declared_bounds_are_the_enforced_ones
);
