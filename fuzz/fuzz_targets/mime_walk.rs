#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zolder::imapd::proto::mime::fuzz_walk(data));
