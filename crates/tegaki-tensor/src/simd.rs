//! Runtime instruction-set dispatch for hand-written loops.
//!
//! The binaries are built for plain x86_64 (so one binary runs anywhere), which
//! leaves LLVM to vectorise our own loops with SSE2 only. [`simd_dispatch!`](crate::simd_dispatch)
//! compiles a function body three times, for AVX-512, for AVX2+FMA and for the
//! baseline, and picks one at run time. The body is written as ordinary,
//! vectorisable Rust: no intrinsics, no `mul_add` (which would not be fused on
//! the baseline path), so every variant computes the same IEEE operations in
//! the same order and gives the same bits.

use std::sync::atomic::{AtomicU8, Ordering};

/// The instruction-set level this CPU offers: 0 baseline, 1 AVX2+FMA,
/// 2 AVX-512 (F, VL, BW, DQ). Detected once and cached.
pub fn level() -> u8 {
    static LEVEL: AtomicU8 = AtomicU8::new(u8::MAX);
    let cached = LEVEL.load(Ordering::Relaxed);
    if cached != u8::MAX {
        return cached;
    }
    let detected = detect();
    LEVEL.store(detected, Ordering::Relaxed);
    detected
}

#[cfg(target_arch = "x86_64")]
fn detect() -> u8 {
    if std::env::var_os("TEGAKI_NO_SIMD").is_some() {
        return 0;
    }
    let v3 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    let v4 = v3
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq");
    u8::from(v3) + u8::from(v4)
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> u8 {
    0
}

/// Defines a function whose body is compiled for AVX-512, AVX2+FMA and the
/// baseline, dispatched on [`level()`] at each call (one relaxed atomic load).
///
/// ```
/// tegaki_tensor::simd_dispatch! {
///     /// Doubles every element.
///     pub fn double(xs: &mut [f32]) {
///         for x in xs.iter_mut() {
///             *x *= 2.0;
///         }
///     }
/// }
/// let mut v = vec![1.0, 2.0];
/// double(&mut v);
/// assert_eq!(v, [2.0, 4.0]);
/// ```
#[macro_export]
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                match $crate::simd::level() {
                    // SAFETY: level() checked at run time that the CPU has
                    // every feature the variant was compiled for.
                    2 => return unsafe { v4($($arg),*) },
                    1 => return unsafe { v3($($arg),*) },
                    _ => {}
                }
            }
            body($($arg),*)
        }
    };
}
