//! [`AfterBump`]: what a write does to a key along with bumping its generation. The group's
//! writes say it; the Redis link carries it out (see `remote`).

/// What a generation bump does to the key.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    not(feature = "redis"),
    expect(dead_code, reason = "without Redis no bump is carried out")
)]
pub(crate) enum AfterBump<'a> {
    /// Deletes it and its lease (`evict`), keeping the value it had under `retired` for
    /// `retired_ms` (0: not at all): a fallback for a load that fails, never a hit.
    Delete {
        lease: &'a str,
        retired: &'a str,
        retired_ms: u64,
    },
    /// Sets it to `value` for `ttl_ms` (`update`).
    Set { value: &'a [u8], ttl_ms: u64 },
}
