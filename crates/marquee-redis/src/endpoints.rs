//! Where Redis is: the mode, the URL (one server, or a comma-separated list of seed nodes),
//! its checks, and how it is shown without passwords.

use serde::Deserialize;

/// What the URL points at.
///
/// ```
/// use marquee_redis::RedisMode;
///
/// assert_eq!(RedisMode::default(), RedisMode::Standalone);
/// assert_eq!(RedisMode::Cluster.to_string(), "cluster");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RedisMode {
    /// One Redis server (or a primary with replicas that fails over behind one address):
    /// the URL names it.
    #[default]
    Standalone,
    /// A Redis Cluster: the URL is a comma-separated list of seed nodes, from which the
    /// client learns the whole cluster. Every script's keys must share a hash tag.
    Cluster,
}

impl std::fmt::Display for RedisMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Standalone => "standalone",
            Self::Cluster => "cluster",
        })
    }
}

/// The node URLs in `url` for `mode`, checked: in standalone mode exactly one
/// (`redis://`, `unix://` or `redis+unix://`), in cluster mode at least one, each
/// `redis://`. The error names the setting (`url` or `mode`) and shows URLs redacted.
///
/// ```
/// use marquee_redis::{RedisMode, node_urls};
///
/// let seeds = node_urls(RedisMode::Cluster, "redis://a:6379, redis://b:6379").unwrap();
/// assert_eq!(seeds, ["redis://a:6379", "redis://b:6379"]);
/// let (field, reason) = node_urls(RedisMode::Standalone, "redis://a,redis://b").unwrap_err();
/// assert_eq!(field, "url");
/// assert!(reason.contains("mode"), "{reason}");
/// ```
///
/// # Errors
///
/// The setting at fault (`"url"`) and why.
pub fn node_urls(mode: RedisMode, url: &str) -> Result<Vec<String>, (&'static str, String)> {
    let urls: Vec<String> = url
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect();
    if url.trim().starts_with("rediss://") || urls.iter().any(|u| u.starts_with("rediss://")) {
        return Err((
            "url",
            "rediss:// (TLS) is not supported by this build; use redis:// or unix://".into(),
        ));
    }
    match mode {
        RedisMode::Standalone => {
            if urls.len() > 1 {
                return Err((
                    "url",
                    format!(
                        "is a comma-separated list of nodes ({}), which only mode \"cluster\" \
                         takes; mode is \"standalone\" (set the mode to \"cluster\" for a \
                         Redis Cluster, or give one URL)",
                        redact_urls(url)
                    ),
                ));
            }
            let single = url.trim();
            if !["redis://", "unix://", "redis+unix://"]
                .iter()
                .any(|scheme| single.starts_with(scheme))
            {
                return Err((
                    "url",
                    format!(
                        "must start with redis://, unix:// or redis+unix://, got {:?}",
                        redact_urls(single)
                    ),
                ));
            }
            Ok(vec![single.to_owned()])
        }
        RedisMode::Cluster => {
            if urls.is_empty() {
                return Err((
                    "url",
                    "mode \"cluster\" needs at least one seed node, \
                     e.g. redis://10.0.0.1:6379,redis://10.0.0.2:6379"
                        .into(),
                ));
            }
            if let Some(other) = urls.iter().find(|u| !u.starts_with("redis://")) {
                return Err((
                    "url",
                    format!(
                        "every seed node of a cluster must be a redis:// URL, got {:?}",
                        redact_urls(other)
                    ),
                ));
            }
            Ok(urls)
        }
    }
}

/// `url` with every password replaced by `***`, for logs and errors: each URL of a
/// comma-separated list, the user's password (`redis://user:password@host`) and the `pass`
/// query parameter of a socket URL (`unix:///path?pass=...`). A part that does not parse as
/// a URL is not shown.
///
/// ```
/// use marquee_redis::redact_urls;
///
/// assert_eq!(
///     redact_urls("redis://:a@n1:6379,redis://:b@n2:6379"),
///     "redis://:***@n1:6379,redis://:***@n2:6379"
/// );
/// ```
pub fn redact_urls(url: &str) -> String {
    if !url.contains(',') {
        return redact_one(url);
    }
    url.split(',')
        .map(|part| {
            let trimmed = part.trim();
            if trimmed.is_empty() {
                String::new()
            } else {
                redact_one(trimmed)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one(raw: &str) -> String {
    let Ok(url) = url::Url::parse(raw) else {
        return "(not a URL)".to_owned();
    };
    let is_secret = |key: &str| key.to_ascii_lowercase().contains("pass");
    let secret_query = url.query_pairs().any(|(key, _)| is_secret(&key));
    if url.password().is_none() && !secret_query {
        // Nothing to hide: show the URL as it was written, not re-serialised.
        return raw.to_owned();
    }
    let mut shown = url.clone();
    if url.password().is_some() && shown.set_password(Some("***")).is_err() {
        return "(a URL with a password)".to_owned();
    }
    if secret_query {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = if is_secret(&key) { "***".into() } else { value };
                (key.into_owned(), value.into_owned())
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(mode: RedisMode, url: &str) -> String {
        match node_urls(mode, url) {
            Err((field, reason)) => format!("{field}: {reason}"),
            Ok(urls) => panic!("{url} accepted as {urls:?}"),
        }
    }

    #[test]
    fn cluster_mode_takes_a_list_of_redis_seeds() {
        assert_eq!(
            node_urls(
                RedisMode::Cluster,
                "redis://10.0.0.1:6379,redis://10.0.0.2:6379"
            )
            .unwrap(),
            ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]
        );
        assert_eq!(
            node_urls(RedisMode::Cluster, "redis://one:6379").unwrap(),
            ["redis://one:6379"]
        );
        assert!(refused(RedisMode::Cluster, "").contains("at least one seed"));
        assert!(refused(RedisMode::Cluster, " , ").contains("at least one seed"));
        let socket = refused(
            RedisMode::Cluster,
            "redis://a:1,unix:///run/r.sock?pass=s3cr3t",
        );
        assert!(socket.starts_with("url: every seed node"), "{socket}");
        assert!(!socket.contains("s3cr3t"), "{socket}");
        assert!(refused(RedisMode::Cluster, "rediss://a:1").contains("TLS"));
    }

    #[test]
    fn standalone_mode_refuses_a_list_naming_the_mode() {
        let list = refused(RedisMode::Standalone, "redis://:s3cr3t@a:1,redis://b:2");
        assert!(list.starts_with("url: is a comma-separated list"), "{list}");
        assert!(list.contains("mode \"cluster\""), "{list}");
        assert!(!list.contains("s3cr3t"), "{list}");
        assert_eq!(
            node_urls(RedisMode::Standalone, "redis://cache:6379").unwrap(),
            ["redis://cache:6379"]
        );
        assert!(refused(RedisMode::Standalone, "http://cache").contains("must start with"));
    }

    #[test]
    fn redaction_covers_every_seed() {
        let shown = redact_urls("redis://u:p1@a:1, redis://:p2@b:2,redis://c:3");
        assert_eq!(shown, "redis://u:***@a:1,redis://:***@b:2,redis://c:3");
        assert_eq!(redact_urls("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redact_urls("redis://:s3cr3t@cache:port"), "(not a URL)");
    }
}
