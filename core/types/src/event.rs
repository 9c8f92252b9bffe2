//! User events: the index a blocking `/v1/event/list` reports for an event ID.

/// Consul's `uuidToUint64`: the two 64-bit halves of the ID XORed.
pub fn event_index(id: &str) -> u64 {
    match uuid::Uuid::parse_str(id) {
        Ok(u) => {
            let b = u.as_bytes();
            let hi = u64::from_be_bytes(b[..8].try_into().unwrap_or_default());
            let lo = u64::from_be_bytes(b[8..].try_into().unwrap_or_default());
            hi ^ lo
        }
        Err(_) => 0,
    }
}
