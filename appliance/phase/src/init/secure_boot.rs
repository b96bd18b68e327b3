//! Secure Boot as the firmware reports it, and the kernel lockdown PID 1 turns on with it
//! (docs/decisions.md D43): booted with Secure Boot, nothing the image did not sign may run in
//! the kernel, so a kexec takes only a kernel signed by a key the firmware trusts (its db, or
//! shim's MOK list, both in the kernel's platform keyring) and only the build's modules load.

use crate::sys;

const EFI_GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
const EFIVARS: &str = "/sys/firmware/efi/efivars";
const SECURITYFS: &str = "/sys/kernel/security";
const LOCKDOWN: &str = "/sys/kernel/security/lockdown";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureBoot {
    /// `on`, `off`, `setup` or `no-uefi`.
    pub state: &'static str,
    /// The lockdown in force: `none`, `integrity`, `confidentiality`, or `unavailable`.
    pub lockdown: String,
}

/// An EFI global variable's one-byte value (efivarfs: 4 bytes of attributes, then the data).
fn efi_byte(name: &str) -> Option<u8> {
    let bytes = std::fs::read(format!("{EFIVARS}/{name}-{EFI_GLOBAL}")).ok()?;
    bytes.get(4).copied()
}

/// The lockdown the kernel is in: the bracketed word of `[none] integrity confidentiality`.
pub fn lockdown_in(text: &str) -> Option<&str> {
    text.split_ascii_whitespace().find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
}

fn lockdown() -> String {
    std::fs::read_to_string(LOCKDOWN).ok().as_deref().and_then(lockdown_in).unwrap_or("unavailable").to_string()
}

/// Reads the firmware's Secure Boot state and, when it is on, locks the kernel down
/// (integrity). Logs both.
pub fn start() -> SecureBoot {
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let uefi = std::path::Path::new("/sys/firmware/efi").exists();
    if uefi {
        if let Err(e) = sys::mount("efivarfs", EFIVARS, "efivarfs", flags | libc::MS_RDONLY, "") {
            if e.raw_os_error() != Some(libc::EBUSY) {
                log!("secure boot: mount efivarfs on {EFIVARS}: {e}");
            }
        }
    }
    if let Err(e) = sys::mount("securityfs", SECURITYFS, "securityfs", flags, "") {
        if e.raw_os_error() != Some(libc::EBUSY) {
            log!("secure boot: mount securityfs on {SECURITYFS}: {e}");
        }
    }
    let state = match (uefi, efi_byte("SecureBoot"), efi_byte("SetupMode")) {
        (false, _, _) => "no-uefi",
        (true, _, Some(1)) => "setup",
        (true, Some(1), _) => "on",
        _ => "off",
    };
    if state == "on" && lockdown() == "none" {
        if let Err(e) = std::fs::write(LOCKDOWN, "integrity") {
            log!("secure boot: writing integrity to {LOCKDOWN}: {e}");
        }
    }
    let lockdown = lockdown();
    match state {
        "on" => log!("secure boot: on; kernel lockdown {lockdown}: a kexec takes only kernels signed by a key the firmware trusts"),
        "setup" => log!(
            "secure boot: the firmware is in setup mode: it checks nothing and takes new keys (lockdown {lockdown}). To turn Secure Boot on with this stick's key, restart, choose \"Enroll Secure Boot keys: phase\" in the stick's menu, then turn Secure Boot on in the firmware settings if it does not go on by itself"
        ),
        "off" => log!("secure boot: off; lockdown {lockdown}: releases are checked against their publisher's signature only"),
        _ => {}
    }
    SecureBoot { state, lockdown }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lockdown_in_force_is_the_bracketed_word() {
        assert_eq!(super::lockdown_in("[none] integrity confidentiality\n"), Some("none"));
        assert_eq!(super::lockdown_in("none [integrity] confidentiality"), Some("integrity"));
        assert_eq!(super::lockdown_in(""), None);
    }
}
