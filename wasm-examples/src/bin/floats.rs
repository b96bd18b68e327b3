//! Float-heavy guest for the cross-arch determinism check: arithmetic, libm functions,
//! conversions, and every way to make a NaN (with payloads, signs, through min/max and
//! copysign), printed as bit patterns. Wasm leaves NaN bits to the hardware; Phase's engine
//! canonicalises them, so x86_64 and aarch64 must print the same lines and use the same fuel.
use std::hint::black_box;

fn main() {
    let n: u32 = std::io::read_to_string(std::io::stdin()).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(2000);
    let payload = f64::from_bits(0x7ff8_0000_dead_beef);
    let neg_payload = f64::from_bits(0xfff4_0000_0000_0001); // a signalling NaN
    let specials = [0.0, -0.0, 1.0, -1.5, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, payload, neg_payload, f64::MIN_POSITIVE / 3.0, 1e308, -1e-308];
    let mut acc = 0u64;
    let mut line = |name: &str, v: f64| {
        acc = acc.rotate_left(7) ^ v.to_bits();
        println!("{name} {:016x}", v.to_bits());
    };
    for (i, &a) in specials.iter().enumerate() {
        for (j, &b) in specials.iter().enumerate() {
            let (a, b) = (black_box(a), black_box(b));
            line(&format!("{i},{j} +"), a + b);
            line(&format!("{i},{j} -"), a - b);
            line(&format!("{i},{j} *"), a * b);
            line(&format!("{i},{j} /"), a / b);
            line(&format!("{i},{j} min"), a.min(b));
            line(&format!("{i},{j} max"), a.max(b));
            line(&format!("{i},{j} copysign"), a.copysign(b));
        }
        line(&format!("{i} sqrt"), a.sqrt());
        line(&format!("{i} f32"), (a as f32) as f64);
        line(&format!("{i} f32 nan"), f64::from(f32::from_bits((a as f32).to_bits() | 0x0040_0001) * 2.0));
        line(&format!("{i} floor"), a.floor());
        line(&format!("{i} trunc"), a.trunc());
        line(&format!("{i} nearest"), a.round_ties_even());
        line(&format!("{i} to i64"), (a as i64) as f64);
    }
    // A long computation mixing libm (compiled into the guest) and NaNs that get cleaned up.
    let mut x = 0.5f64;
    for k in 0..n {
        let t = (x * 3.7).sin() + (x + k as f64).sqrt().ln_1p() - (x / 0.3).exp().recip();
        x = if t.is_nan() { (k as f64).cos() } else { t.fract().abs() + 0.01 };
        if k % 97 == 0 {
            x += black_box(0.0f64 / 0.0).max(x); // NaN through max
        }
    }
    line("series", x);
    println!("digest {acc:016x}");
}
