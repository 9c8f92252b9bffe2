#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| legate_fuzz_targets::rpc_frame(data));
