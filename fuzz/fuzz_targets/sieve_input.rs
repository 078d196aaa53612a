#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zolder::deliver::sieve::fuzz_input(data));
