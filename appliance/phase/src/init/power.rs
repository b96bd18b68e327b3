//! The power button: KEY_POWER from any evdev device (ACPI button on x86, gpio-keys on arm64
//! virt) becomes SIGPWR to PID 1, which shuts down cleanly.

use std::io::Read;
use std::time::Duration;

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// struct input_event on 64-bit: timeval (16 bytes), type u16, code u16, value i32.
const EVENT_SIZE: usize = 24;

pub fn watch_power_button() {
    let _ = std::thread::Builder::new().name("power-button".into()).spawn(|| {
        let mut watched = std::collections::HashSet::new();
        // Input drivers may probe after PID 1 starts: look again for a while.
        for _ in 0..30 {
            if let Ok(dir) = std::fs::read_dir("/dev/input") {
                for entry in dir.flatten() {
                    let path = entry.path();
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with("event") && watched.insert(path.clone()) {
                        let _ = std::thread::Builder::new().name(name).spawn(move || watch(&path));
                    }
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

fn watch(path: &std::path::Path) {
    let Ok(mut dev) = std::fs::File::open(path) else { return };
    let mut buf = [0u8; EVENT_SIZE];
    while dev.read_exact(&mut buf).is_ok() {
        let kind = u16::from_ne_bytes([buf[16], buf[17]]);
        let code = u16::from_ne_bytes([buf[18], buf[19]]);
        let value = i32::from_ne_bytes([buf[20], buf[21], buf[22], buf[23]]);
        if kind == EV_KEY && code == KEY_POWER && value == 1 {
            log!("power button pressed ({})", path.display());
            let _ = crate::sys::kill(std::process::id() as i32, libc::SIGPWR);
        }
    }
}
