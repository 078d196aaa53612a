#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zolder::imapd::proto::fuzz_command(data));
