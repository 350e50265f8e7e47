//! [`AfterBump`]: what a write does to a key along with bumping its generation; and
//! [`HeldLease`], the lease a load's conditional store releases. The group says them; the
//! Redis link carries them out (see `remote`).

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

/// A lease a load holds: its key and the token it was taken with. The load's store releases
/// it in the same script, if it still holds the token.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    not(feature = "redis"),
    expect(dead_code, reason = "without Redis no lease is taken")
)]
pub(crate) struct HeldLease<'a> {
    pub(crate) key: &'a str,
    pub(crate) token: &'a str,
}
