//! Which instruction set the kernels use, chosen once at run time.
//!
//! `is_x86_feature_detected!` decides, never `target-cpu`: a binary built on one x86-64
//! machine runs the best path the machine it runs on has. `DENSA_ISA=scalar|avx2|avx512`
//! forces a lower path (for tests and benchmarks); asking for more than the CPU has falls
//! back to the best available.

use std::sync::OnceLock;

/// A family of micro-kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust, any CPU (the compiler may still vectorise it with the baseline ISA).
    Scalar,
    /// x86-64 AVX2 + FMA, 256-bit.
    Avx2,
    /// x86-64 AVX-512F, 512-bit.
    Avx512,
}

impl Isa {
    /// Every ISA this CPU can run, lowest first (detected once).
    pub fn available() -> &'static [Isa] {
        static AVAILABLE: OnceLock<Vec<Isa>> = OnceLock::new();
        AVAILABLE.get_or_init(Isa::detect)
    }

    /// Whether this CPU can run `self`.
    pub fn is_available(self) -> bool {
        Isa::available().contains(&self)
    }

    fn detect() -> Vec<Isa> {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut out = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                out.push(Isa::Avx2);
            }
            if is_x86_feature_detected!("avx512f") {
                out.push(Isa::Avx512);
            }
        }
        out
    }

    /// The values `DENSA_ISA` may take (`avx512` is the best there is, the default).
    pub const ENV_VALUES: [&'static str; 3] = ["scalar", "avx2", "avx512"];

    /// Checks `DENSA_ISA`: unset or one of [`Isa::ENV_VALUES`], else an error listing them
    /// (the library refuses to start with a value it would otherwise ignore).
    pub fn check_env() -> Result<(), String> {
        match std::env::var("DENSA_ISA") {
            Err(std::env::VarError::NotPresent) => Ok(()),
            Ok(v) if Isa::ENV_VALUES.contains(&v.as_str()) => Ok(()),
            Ok(v) => Err(format!(
                "DENSA_ISA={v:?} is not a kernel path: use one of {}",
                Isa::ENV_VALUES.join(", ")
            )),
            Err(std::env::VarError::NotUnicode(v)) => Err(format!(
                "DENSA_ISA={v:?} is not a kernel path: use one of {}",
                Isa::ENV_VALUES.join(", ")
            )),
        }
    }

    /// The ISA the kernels use: the best available, or `DENSA_ISA` if it asks for less.
    pub fn selected() -> Isa {
        static SELECTED: OnceLock<Isa> = OnceLock::new();
        *SELECTED.get_or_init(|| {
            let best = *Isa::available().last().expect("scalar is always available");
            match std::env::var("DENSA_ISA").ok().as_deref() {
                Some("scalar") => Isa::Scalar,
                Some("avx2") => best.min(Isa::Avx2),
                _ => best,
            }
        })
    }

    /// Whether `DENSA_ISA` chose a lower path than the CPU's best.
    pub fn forced() -> bool {
        Isa::selected() != *Isa::available().last().expect("scalar is always available")
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2+fma",
            Isa::Avx512 => "avx512f",
        }
    }
}
