//! The kernel module index depmod writes (`modules.alias`, `modules.dep`), read so that PID 1
//! can load the driver a device asks for (its `modalias`) with the modules it needs, in order.
//!
//! `modules.alias` lines are `alias <pattern> <module>`, the pattern a shell glob (`*`, `?`,
//! `[...]`) over a device's modalias such as `pci:v00008086d000015F3sv...`. `modules.dep`
//! lines are `<path>: <dependency path>...`, dependencies listed so that the last one must
//! load first. Module names compare with `-` and `_` the same, as the kernel does.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// At most this many alias lines and modules: the index of a kernel with every driver has
/// ~30 000 aliases; ours a few hundred.
pub const MAX_ENTRIES: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmodError {
    /// `modules.alias` line N is not `alias PATTERN MODULE`.
    Alias(usize),
    /// `modules.dep` line N is not `PATH: PATH...`.
    Dep(usize),
    TooMany,
}

impl fmt::Display for KmodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KmodError::Alias(n) => write!(f, "modules.alias line {n} is not `alias PATTERN MODULE`"),
            KmodError::Dep(n) => write!(f, "modules.dep line {n} is not `PATH: DEPENDENCY...`"),
            KmodError::TooMany => write!(f, "the module index has more than {MAX_ENTRIES} entries"),
        }
    }
}

/// A module's name as the kernel compares it: `-` read as `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a path in `modules.dep` (`kernel/drivers/net/foo-bar.ko` → `foo_bar`).
pub fn name_of_path(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = [".ko.zst", ".ko.xz", ".ko.gz", ".ko"].iter().find_map(|s| file.strip_suffix(s)).unwrap_or(file);
    normalize(stem)
}

/// The index: aliases in file order, and each module's path and dependencies.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    aliases: Vec<(String, String)>,
    /// name → (path, dependency paths: the last loads first).
    modules: BTreeMap<String, (String, Vec<String>)>,
}

impl ModuleIndex {
    pub fn parse(alias_text: &str, dep_text: &str) -> Result<ModuleIndex, KmodError> {
        let mut index = ModuleIndex::default();
        for (n, line) in alias_text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_ascii_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("alias"), Some(pattern), Some(module), None) => index.aliases.push((pattern.to_string(), normalize(module))),
                _ => return Err(KmodError::Alias(n + 1)),
            }
            if index.aliases.len() > MAX_ENTRIES {
                return Err(KmodError::TooMany);
            }
        }
        for (n, line) in dep_text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some((path, deps)) = line.split_once(':') else { return Err(KmodError::Dep(n + 1)) };
            if path.is_empty() || path.contains(char::is_whitespace) {
                return Err(KmodError::Dep(n + 1));
            }
            let deps = deps.split_ascii_whitespace().map(str::to_string).collect();
            index.modules.insert(name_of_path(path), (path.to_string(), deps));
            if index.modules.len() > MAX_ENTRIES {
                return Err(KmodError::TooMany);
            }
        }
        Ok(index)
    }

    /// The modules whose aliases match `modalias`, each once, in index order.
    pub fn modules_for(&self, modalias: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (pattern, module) in &self.aliases {
            if !out.contains(&module.as_str()) && glob_match(pattern.as_bytes(), modalias.as_bytes()) {
                out.push(module);
            }
        }
        out
    }

    /// Every module's path (relative to the modules directory), in name order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.modules.values().map(|(p, _)| p.as_str())
    }

    /// The path of `module` (relative to the modules directory), if the index knows it.
    pub fn path_of(&self, module: &str) -> Option<&str> {
        self.modules.get(&normalize(module)).map(|(p, _)| p.as_str())
    }

    /// The paths to load for `module`, dependencies first, each once; None for a module the
    /// index does not know. depmod lists a module's whole dependency closure, the one to load
    /// last first, so this is that list reversed and the module itself.
    pub fn load_order(&self, module: &str) -> Option<Vec<&str>> {
        let (path, deps) = self.modules.get(&normalize(module))?;
        let mut out: Vec<&str> = Vec::with_capacity(deps.len() + 1);
        for d in deps.iter().rev() {
            if !out.contains(&d.as_str()) && d != path {
                out.push(d);
            }
        }
        out.push(path);
        Some(out)
    }
}

/// A kernel log line that says a device's firmware file could not be loaded: the device (its
/// bus address, the second word of a driver message) and the file. `/dev/kmsg` records
/// (`6,123,456,-;r8169 0000:02:00.0: Direct firmware load for rtl_nic/rtl8168h-2.fw failed
/// with error -2`) and plain lines both read.
pub fn firmware_failure(record: &str) -> Option<(String, String)> {
    let text = match record.split_once(';') {
        Some((prefix, rest)) if prefix.bytes().all(|b| b.is_ascii_digit() || b == b',' || b == b'-' || b == b'c') => rest,
        _ => record,
    };
    let text = text.lines().next()?;
    const SAID: [(&str, &str); 3] =
        [("Direct firmware load for ", " failed"), ("Unable to load firmware ", " "), ("firmware: failed to load ", " ")];
    let (file, at) = SAID.iter().find_map(|(before, after)| {
        let at = text.find(before)?;
        let rest = &text[at + before.len()..];
        let end = rest.find(after).unwrap_or(rest.len());
        Some((rest[..end].trim(), at))
    })?;
    // "<driver> <device>: <message>"
    let mut words = text[..at].split_ascii_whitespace();
    let device = words.nth(1)?.trim_end_matches(':');
    if file.is_empty() || device.is_empty() || file.len() > 256 || device.len() > 64 {
        return None;
    }
    Some((device.to_string(), file.to_string()))
}

/// Shell glob match: `*` any run, `?` any byte, `[abc]`, `[a-z]`, `[!a]`; anything else itself.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: its pattern position and the text it has eaten to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(&pattern[p..], text[t]) {
                        if matched {
                            p += next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A `[...]` class at the start of `pattern`: whether `c` is in it, and the class's length;
/// None when the class is not closed (then `[` is a plain byte).
fn class_match(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() {
        let lo = pattern[i];
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&hi| hi != b']') {
            let hi = pattern[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_the_shell_does() {
        let m = |p: &str, t: &str| glob_match(p.as_bytes(), t.as_bytes());
        assert!(m("pci:v00008086d000010D3sv*sd*bc*sc*i*", "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"));
        assert!(!m("pci:v00008086d000010D3sv*sd*bc*sc*i*", "pci:v00008086d000010D4sv00008086sd00000000bc02sc00i00"));
        assert!(m("usb:v*p*d*dc*dsc*dp*ic02isc06ip00in*", "usb:v0525pA4A2d0000dc02dsc00dp00ic02isc06ip00in00"));
        assert!(m("a?c", "abc") && !m("a?c", "ac"));
        assert!(m("x[0-9]y", "x5y") && !m("x[0-9]y", "xay") && m("x[!0-9]y", "xay"));
        assert!(m("*", "") && m("**a", "a") && !m("a", "ab") && !m("ab", "a"));
        assert!(m("a[b", "a[b"), "an unclosed class is a plain [");
        assert!(m("*d*bc02*", "pci:v1d2bc02sc00") && !m("*d*bc02*", "pci:v1d2bc03sc00"));
    }

    #[test]
    fn a_device_finds_its_module_and_the_modules_it_needs_first() {
        let aliases = "# Aliases extracted from modules themselves.\n\
            alias pci:v00008086d000015F3sv*sd*bc*sc*i* igc\n\
            alias usb:v0BDAp8153d*dc*dsc*dp*ic*isc*ip*in* r8152\n\
            alias mdio:0000000000011100110010110001???? realtek\n";
        let deps = "kernel/drivers/net/ethernet/intel/igc/igc.ko:\n\
            kernel/drivers/net/usb/r8152.ko: kernel/drivers/net/mii.ko kernel/drivers/net/phy/libphy.ko\n\
            kernel/drivers/net/mii.ko: kernel/drivers/net/phy/libphy.ko\n\
            kernel/drivers/net/phy/libphy.ko:\n";
        let index = ModuleIndex::parse(aliases, deps).unwrap();
        assert_eq!(index.modules_for("pci:v00008086d000015F3sv00008086sd00000000bc02sc00i00"), ["igc"]);
        assert_eq!(index.modules_for("usb:v0BDAp8153d3000dc00dsc00dp00icFFisc00ip00in00"), ["r8152"]);
        assert!(index.modules_for("pci:v00001022d00002000sv00001022sd00002000bc02sc00i00").is_empty());
        assert_eq!(
            index.load_order("r8152").unwrap(),
            ["kernel/drivers/net/phy/libphy.ko", "kernel/drivers/net/mii.ko", "kernel/drivers/net/usb/r8152.ko"]
        );
        assert_eq!(index.load_order("igc").unwrap(), ["kernel/drivers/net/ethernet/intel/igc/igc.ko"]);
        assert!(index.load_order("ice").is_none());
        assert_eq!(name_of_path("kernel/drivers/net/usb/ax88179_178a.ko"), "ax88179_178a");
        assert_eq!(index.path_of("r8152"), Some("kernel/drivers/net/usb/r8152.ko"));
    }

    #[test]
    fn an_index_that_is_not_depmods_is_refused_with_its_line() {
        assert_eq!(ModuleIndex::parse("alias onlytwo\n", "").unwrap_err(), KmodError::Alias(1));
        assert_eq!(ModuleIndex::parse("", "x.ko: a.ko\nno colon here\n").unwrap_err(), KmodError::Dep(2));
    }

    #[test]
    fn a_missing_firmware_file_is_read_from_the_kernel_log_with_its_device() {
        let f = |s: &str| firmware_failure(s);
        assert_eq!(
            f("4,612,2042131,-;r8169 0000:02:00.0: Direct firmware load for rtl_nic/rtl8168h-2.fw failed with error -2"),
            Some(("0000:02:00.0".into(), "rtl_nic/rtl8168h-2.fw".into()))
        );
        assert_eq!(
            f("r8169 0000:02:00.0: Unable to load firmware rtl_nic/rtl8125b-2.fw (-2)"),
            Some(("0000:02:00.0".into(), "rtl_nic/rtl8125b-2.fw".into()))
        );
        assert_eq!(
            f("6,700,1,-;r8152 2-1:1.0: firmware: failed to load rtl_nic/rtl8153a-4.fw (-2)"),
            Some(("2-1:1.0".into(), "rtl_nic/rtl8153a-4.fw".into()))
        );
        assert_eq!(f("6,1,1,-;e1000e 0000:00:02.0 eth0: NIC Link is Up 1000 Mbps Full Duplex"), None);
        assert_eq!(f("Direct firmware load for x.fw failed"), None, "no device named");
    }

    #[test]
    fn a_module_listed_as_its_own_dependency_or_twice_loads_once() {
        let index = ModuleIndex::parse("", "a.ko: b.ko a.ko b.ko\nb.ko: a.ko\n").unwrap();
        assert_eq!(index.load_order("a").unwrap(), ["b.ko", "a.ko"]);
    }
}
