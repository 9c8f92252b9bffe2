//! A process's counters from Linux's `/proc/<pid>/status` (`VmRSS`, `RssFile`, `Threads`...):
//! read by the agent's runtime gauges, by itself when it pages its binary out, by `legate
//! plugin bench`, and by the tests and benchmarks that watch an agent's memory.

/// Field `name` (without its colon) of `/proc/<pid>/status`, `pid` being a number or `self`.
/// Memory fields are in KiB. None where there is no such file or field (not Linux).
pub fn field(pid: &str, name: &str) -> Option<u64> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, name)
}

fn parse(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_its_number_and_a_longer_name_does_not_match() {
        let status = "Name:\tlegate\nVmRSSMax:\t9 kB\nVmRSS:\t   19296 kB\nRssFile:\t   16436 kB\nThreads:\t11\n";
        assert_eq!(parse(status, "VmRSS"), Some(19296));
        assert_eq!(parse(status, "RssFile"), Some(16436));
        assert_eq!(parse(status, "Threads"), Some(11));
        assert_eq!(parse(status, "Name"), None, "not a number");
        assert_eq!(parse(status, "VmSwap"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_resident_size() {
        assert!(field("self", "VmRSS").is_some_and(|kib| kib > 0));
    }
}
