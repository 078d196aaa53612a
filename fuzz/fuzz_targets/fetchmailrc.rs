#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zolder::config::fetchmailrc::fuzz_parse(data));
