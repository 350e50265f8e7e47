//! [`ChaosProxy`]: a TCP proxy a test controls: it forwards to a target until told to cut the link, then
//! drops every open connection and refuses new ones until restored. Lets a test take
//! PostgreSQL or Redis away from a running app and give it back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

#[derive(Debug)]
pub struct ChaosProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl ChaosProxy {
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let links = Arc::new(Mutex::new(JoinSet::new()));
        let target = target.to_owned();
        let accept = tokio::spawn({
            let cut = cut.clone();
            let links = links.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    links.lock().await.spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
        });
        Self {
            port,
            cut,
            links,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.links.lock().await.abort_all();
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// `host:port` of the server a URL like `scheme://user@host:port/...` names.
///
/// A PostgreSQL or Redis URL without a port names its server's default port.
///
/// # Panics
/// If `url` is not a URL with a host (tests pass the URLs their servers gave).
pub fn host_port(url: &str) -> String {
    let url = url::Url::parse(url).unwrap_or_else(|error| panic!("{url:?}: {error}"));
    let host = url.host_str().unwrap_or_else(|| panic!("{url}: no host"));
    let port = url.port().unwrap_or(match url.scheme() {
        "postgres" | "postgresql" => 5432,
        "redis" => 6379,
        _ => panic!("{url}: no port"),
    });
    format!("{host}:{port}")
}

/// `url` with its host and port replaced by the proxy's.
pub fn through(url: &str, proxy: &ChaosProxy) -> String {
    let mut through = url::Url::parse(url).unwrap_or_else(|error| panic!("{url:?}: {error}"));
    through
        .set_host(Some("127.0.0.1"))
        .unwrap_or_else(|error| panic!("{url:?}: {error}"));
    through
        .set_port(Some(proxy.port))
        .unwrap_or_else(|()| panic!("{url:?}: cannot take a port"));
    through.into()
}
