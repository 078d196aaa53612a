#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zolder::pop3d::proto::fuzz_command(data));
