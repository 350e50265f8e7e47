//! `TestApp`: a running Marquee on port 0 with its own database.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use marquee_domain::{
    CatalogueRepository, Concert, ConcertId, Page, PageRequest, RepositoryError,
    ScheduleAvailability, ScheduleId, Seat, SeatFilter,
};
use marquee_persistence::test_support::TestDatabase;
use marquee_persistence::{Backend, DbPool};
use marquee_server::settings::Sources;
use marquee_server::startup::CatalogueLayer;
use marquee_server::{Application, Settings};
use serde_json::Value;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub pool: DbPool,
    pub cache: marquee_cache::Cache,
    pub handle: marquee_api::ServerHandle,
    /// Stops the server when the test ends.
    instance: Instance,
    /// Dropped last: the database outlives the server using it.
    pub db: TestDatabase,
}

/// A cache namespace no other test (or earlier run) uses, so a test's Redis keys are its own.
pub fn namespace() -> String {
    marquee_testkit::unique_namespace("marquee:v1:test")
}

/// Settings for a test app on `db`, with `overrides` as `MARQUEE__...` variables.
pub fn test_settings(db_url: &str, overrides: &[(&str, &str)]) -> Settings {
    let mut variables: HashMap<String, String> = [
        ("MARQUEE__SERVER__BIND", "127.0.0.1:0"),
        ("MARQUEE__SERVER__WORKERS", "2"),
        ("MARQUEE__SERVER__SHUTDOWN_TIMEOUT", "1s"),
        ("MARQUEE__DATABASE__URL", db_url),
        ("MARQUEE__DATABASE__POOL__MAXIMUM_POOL_SIZE", "4"),
        ("MARQUEE__DATABASE__POOL__CONNECTION_TIMEOUT", "2s"),
        ("MARQUEE__DATABASE__POOL__VALIDATION_TIMEOUT", "1s"),
        ("MARQUEE__LOG__FILTER", "warn"),
        // Background reloads would add loads the tests do not expect; the refresher is
        // tested in marquee-cache.
        ("MARQUEE__CACHE__REFRESH__ENABLED", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (key, value) in overrides {
        variables.insert((*key).to_owned(), (*value).to_owned());
    }
    Settings::load_from(Sources {
        environment: None,
        config_dir: None,
        variables,
    })
    .expect("test settings are valid")
}

/// Settings for a test app on `db` with its cache on `redis` under `namespace`, and `more`.
pub fn redis_settings(
    db_url: &str,
    redis: &str,
    namespace: &str,
    more: &[(&str, &str)],
) -> Settings {
    let mut overrides = vec![
        ("MARQUEE__REDIS__URL", redis),
        ("MARQUEE__CACHE__NAMESPACE", namespace),
        // A slow reply on a loaded machine would otherwise count as a Redis failure and
        // fail open into an extra load.
        ("MARQUEE__REDIS__RESPONSE_TIMEOUT", "2s"),
    ];
    overrides.extend_from_slice(more);
    test_settings(db_url, &overrides)
}

impl TestApp {
    /// A running app with the demo catalogue on a database of `backend`.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    pub async fn spawn_with(backend: Backend, overrides: &[(&str, &str)]) -> Self {
        let db = TestDatabase::new(backend);
        let settings = test_settings(db.url().as_str(), overrides);
        Self::start(db, settings).await
    }

    pub async fn start(db: TestDatabase, settings: Settings) -> Self {
        Self::start_layered(db, settings, Box::new(|repository| repository)).await
    }

    /// Starts an app whose catalogue repository is wrapped in `layer`.
    pub async fn start_layered(
        db: TestDatabase,
        settings: Settings,
        layer: CatalogueLayer,
    ) -> Self {
        let instance = Instance::start(settings, layer).await;
        Self {
            address: instance.address.clone(),
            client: reqwest::Client::new(),
            pool: instance.pool.clone(),
            cache: instance.cache.clone(),
            handle: instance.handle.clone(),
            instance,
            db,
        }
    }

    /// A bearer token for `user`, valid for an hour.
    pub fn token(&self, user: i64) -> String {
        self.instance.token(user)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("the request is sent")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// The items of the JSON array a GET of `path` answers, asserting a 200.
    pub async fn get_array(&self, path: &str) -> Vec<Value> {
        match self.get_json(path).await {
            (200, Value::Array(items)) => items,
            (status, body) => panic!("GET {path}: {status} {body}, not 200 with an array"),
        }
    }

    /// Asserts that a GET of each path answers a problem with `status` and the path's code.
    pub async fn assert_get_problems(&self, status: u16, cases: &[(&str, &str)]) {
        for (path, code) in cases {
            assert_problem(self.get(path).await, status, code).await;
        }
    }
}

/// One running app without a database of its own: several can share one database (and
/// one Redis) to act as a fleet.
pub struct Instance {
    pub address: String,
    /// Mints bearer tokens with this instance's secret.
    pub tokens: marquee_api::auth::Tokens,
    pub pool: DbPool,
    pub cache: marquee_cache::Cache,
    pub handle: marquee_api::ServerHandle,
}

impl Instance {
    pub async fn start(settings: Settings, layer: CatalogueLayer) -> Self {
        marquee_server::telemetry::init(&settings);
        let tokens = settings.auth.tokens();
        let app = Application::build_with(settings, layer)
            .await
            .expect("the app builds");
        let instance = Self {
            tokens,
            address: format!("http://127.0.0.1:{}", app.port()),
            pool: app.pool().clone(),
            cache: app.cache().clone(),
            handle: app.handle(),
        };
        tokio::spawn(app.run_until_stopped());
        instance
    }
}

impl Instance {
    /// A bearer token for `user`, valid for an hour.
    pub fn token(&self, user: i64) -> String {
        self.tokens
            .mint(
                marquee_domain::UserId::new(user).expect("a positive user id"),
                std::time::Duration::from_secs(3600),
            )
            .expect("a token")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// A chaos proxy in front of `url`'s host and port, and `url` pointed at the proxy, so a test
/// can cut the link and restore it.
pub async fn behind_a_proxy(url: &str) -> (marquee_testkit::ChaosProxy, String) {
    let proxy = marquee_testkit::ChaosProxy::start(&marquee_testkit::host_port(url)).await;
    let through = marquee_testkit::through(url, &proxy);
    (proxy, through)
}

/// Asserts an RFC 9457 problem response with `status` and `code`; returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status for {code}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("a problem body");
    assert_eq!(body["status"], status);
    assert_eq!(body["code"], code, "body: {body}");
    assert!(body["title"].is_string() && body["detail"].is_string());
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with(&format!("/{code}")))
    );
    body
}

/// Counts the loads that reach the repository (and the concert listings among them), and how
/// many run at once.
#[derive(Default)]
pub struct Counting {
    listings: AtomicUsize,
    loads: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Counting {
    pub fn layer(self: &Arc<Self>) -> marquee_server::startup::CatalogueLayer {
        let counting = self.clone();
        Box::new(move |inner| {
            // The layer runs once per app; every app of a test shares the counters.
            let wrapped = Arc::new(Wrapped {
                counting: counting.clone(),
                inner,
            });
            wrapped as Arc<dyn CatalogueRepository>
        })
    }

    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    pub fn listings(&self) -> usize {
        self.listings.load(Ordering::SeqCst)
    }

    pub fn reset_max(&self) {
        self.max_in_flight.store(0, Ordering::SeqCst);
    }

    pub fn max(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    async fn track<T>(&self, work: impl Future<Output = T>) -> T {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        // Long enough that concurrent requests overlap the load.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let result = work.await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

struct Wrapped {
    counting: Arc<Counting>,
    inner: Arc<dyn CatalogueRepository>,
}

#[async_trait]
impl CatalogueRepository for Wrapped {
    async fn list_concerts(&self, page: PageRequest) -> Result<Page<Concert>, RepositoryError> {
        self.counting.listings.fetch_add(1, Ordering::SeqCst);
        self.counting.track(self.inner.list_concerts(page)).await
    }

    async fn find_concert(&self, id: ConcertId) -> Result<Option<Concert>, RepositoryError> {
        self.counting.track(self.inner.find_concert(id)).await
    }

    async fn list_schedules(
        &self,
        id: ConcertId,
    ) -> Result<Option<Vec<ScheduleAvailability>>, RepositoryError> {
        self.counting.track(self.inner.list_schedules(id)).await
    }

    async fn list_seats(
        &self,
        id: ScheduleId,
        filter: SeatFilter,
    ) -> Result<Option<Vec<Seat>>, RepositoryError> {
        self.counting.track(self.inner.list_seats(id, filter)).await
    }
}

/// An app on `db` with its cache under `namespace` (on `redis`, if given) whose repository
/// loads are counted.
pub async fn counted_app(
    db: TestDatabase,
    namespace: &str,
    redis: Option<&str>,
) -> (TestApp, Arc<Counting>) {
    let settings = match redis {
        Some(redis) => redis_settings(db.url().as_str(), redis, namespace, &[]),
        None => test_settings(
            db.url().as_str(),
            &[("MARQUEE__CACHE__NAMESPACE", namespace)],
        ),
    };
    let counting = Arc::new(Counting::default());
    let app = TestApp::start_layered(db, settings, counting.layer()).await;
    (app, counting)
}
