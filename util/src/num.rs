//! Numbers meant for people: rounded to significant digits, so float noise such as
//! `0.13259949999999998` never reaches a report, a message or a CSV a user reads.

/// `x` rounded to `digits` significant decimal digits (non-finite values and 0 unchanged).
pub fn round_sig(x: f64, digits: u32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = digits as i32 - 1 - magnitude;
    // Round through the decimal text: exact to the shortest representation, unlike x * 10^k.
    let text = if decimals >= 0 { format!("{:.*}", decimals as usize, x) } else { format!("{:.0}", x) };
    let rounded: f64 = text.parse().unwrap_or(x);
    if decimals < 0 {
        let scale = 10f64.powi(-decimals);
        (rounded / scale).round() * scale
    } else {
        rounded
    }
}

/// Shows a number to 7 significant digits, in its shortest form (`0.1325995`, `12`, `1.5e-7`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sig(pub f64);

impl std::fmt::Display for Sig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", round_sig(self.0, 7))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_goes_and_digits_stay() {
        assert_eq!(round_sig(0.13259949999999998, 7), 0.1325995);
        assert_eq!(round_sig(0.13259949999999998, 6), 0.132599);
        assert_eq!(round_sig(0.06805332295239065, 6), 0.0680533);
        assert_eq!(round_sig(0.28189800000000004, 9), 0.281898);
        assert_eq!(round_sig(123456789.0, 3), 123000000.0);
        assert_eq!(round_sig(-2.5e-9, 2), -2.5e-9);
        assert_eq!(round_sig(0.0, 6), 0.0);
        assert!(round_sig(f64::NAN, 6).is_nan());
        assert_eq!(Sig(0.13259949999999998).to_string(), "0.1325995");
        assert_eq!(Sig(12.0).to_string(), "12");
    }
}
