#![no_main]
//! Kernel command lines (a boot menu, a netboot hop's manifest, a PXE answer set them).
use libfuzzer_sys::fuzz_target;
use phase_core::boot::cmdline::BootConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = BootConfig::parse(text);
    }
});
