#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zolder::submit::proto::fuzz_session(data));
