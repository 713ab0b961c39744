//! Exact decimal text for [`Decimal`] values of any size.
//!
//! Avro and Kafka Connect carry a decimal as an unscaled big-endian two's-complement integer
//! plus a scale. PostgreSQL's `numeric` reaches 147,455 digits, far beyond `i128`, so the
//! digits are produced here with schoolbook division over 32-bit limbs (quadratic, but a few
//! milliseconds even for the largest `numeric`); values that fit in `i128` take the direct
//! path. The text (`-12345.6789`, `0.00`, `123E+3`) is what Python's `decimal.Decimal`
//! parses exactly, keeping the scale as its exponent.

use std::fmt;

use smallvec::SmallVec;

use super::value::Decimal;
use crate::error::{Error, Result};

/// The largest unscaled integer we accept, in bytes: a little more than PostgreSQL's largest
/// `numeric` (about 61,000 bytes), and small enough that the quadratic digit conversion stays
/// well under a second even for a malicious message.
pub(crate) const MAX_UNSCALED_BYTES: usize = 64 * 1024;

/// Refuse an unscaled integer larger than [`MAX_UNSCALED_BYTES`].
pub(crate) fn check_unscaled(unscaled: &[u8]) -> Result<()> {
    if unscaled.len() > MAX_UNSCALED_BYTES {
        return Err(Error::decode(format!(
            "decimal of {} bytes is larger than any database stores (limit {MAX_UNSCALED_BYTES})",
            unscaled.len()
        )));
    }
    Ok(())
}

impl Decimal {
    /// A decimal from its unscaled two's-complement bytes, refusing absurd sizes.
    pub(crate) fn new(unscaled: &[u8], scale: i32) -> Result<Decimal> {
        check_unscaled(unscaled)?;
        Ok(Decimal {
            unscaled: SmallVec::from_slice(unscaled),
            scale,
        })
    }

    /// Whether the value is negative.
    pub fn is_negative(&self) -> bool {
        self.unscaled.first().is_some_and(|b| b & 0x80 != 0)
    }

    /// The magnitude of the unscaled integer, when it fits in 128 bits (16 bytes or fewer).
    fn small_magnitude(&self) -> Option<u128> {
        let bytes = &self.unscaled;
        if bytes.len() > 16 {
            return None;
        }
        let fill = if self.is_negative() { 0xff } else { 0 };
        let mut wide = [fill; 16];
        wide[16 - bytes.len()..].copy_from_slice(bytes);
        Some(i128::from_be_bytes(wide).unsigned_abs())
    }

    /// The decimal digits of the unscaled integer's magnitude, without leading zeros ("0" for
    /// zero).
    pub fn unscaled_digits(&self) -> String {
        if let Some(magnitude) = self.small_magnitude() {
            return magnitude.to_string();
        }
        let magnitude = if self.is_negative() {
            negate(&self.unscaled)
        } else {
            self.unscaled.to_vec()
        };
        big_digits(&magnitude)
    }

    /// The text `Display` writes, written into `out` without allocating, when the unscaled
    /// integer fits in 128 bits (`None` for wider ones). Decimals become Python objects
    /// through their text, one per value, and this is that text's fast path.
    pub fn small_text<'b>(&self, out: &'b mut [u8; SMALL_TEXT_BYTES]) -> Option<&'b str> {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(self.small_magnitude()?);
        let mut length = 0;
        write_text(self.is_negative(), digits, self.scale, |piece| {
            let end = length + piece.len();
            let room = out.get_mut(length..end).ok_or(fmt::Error)?;
            room.copy_from_slice(piece.as_bytes());
            length = end;
            Ok(())
        })
        .ok()?;
        std::str::from_utf8(&out[..length]).ok()
    }
}

/// Room for [`Decimal::small_text`]: a sign, "0.", the most leading zeros and 39 digits (an
/// exponent form is shorter).
pub const SMALL_TEXT_BYTES: usize = 1 + 2 + MAX_LEADING_ZEROS + 39;

/// The two's-complement negation of a big-endian integer (its magnitude, read unsigned).
fn negate(bytes: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = bytes.iter().map(|b| !b).collect();
    for byte in out.iter_mut().rev() {
        let (sum, carry) = byte.overflowing_add(1);
        *byte = sum;
        if !carry {
            break;
        }
    }
    out
}

/// Decimal digits of an unsigned big-endian integer of any length.
fn big_digits(magnitude: &[u8]) -> String {
    // Big-endian 32-bit limbs, the first one padded on the left.
    let padding = (4 - magnitude.len() % 4) % 4;
    let mut padded = vec![0u8; padding];
    padded.extend_from_slice(magnitude);
    let mut limbs: Vec<u32> = padded
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .skip_while(|&limb| limb == 0)
        .collect();
    // Repeatedly divide by 10^9, collecting nine digits per step, least significant first.
    const CHUNK: u64 = 1_000_000_000;
    let mut chunks = Vec::new();
    while !limbs.is_empty() {
        let mut remainder: u64 = 0;
        for limb in limbs.iter_mut() {
            let current = (remainder << 32) | u64::from(*limb);
            *limb = (current / CHUNK) as u32;
            remainder = current % CHUNK;
        }
        chunks.push(remainder as u32);
        let leading_zeros = limbs.iter().take_while(|&&limb| limb == 0).count();
        limbs.drain(..leading_zeros);
    }
    let mut text = match chunks.pop() {
        Some(most_significant) => most_significant.to_string(),
        None => return "0".to_owned(),
    };
    for chunk in chunks.iter().rev() {
        text.push_str(&format!("{chunk:09}"));
    }
    text
}

/// The most zeros written between the point and the digits (`0.000…05`); beyond that the
/// exponent form (`5E-40`) says the same with the same exponent, and a hostile scale of 2^31
/// cannot make us write gigabytes of zeros.
const MAX_LEADING_ZEROS: usize = 32;

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.unscaled_digits();
        write_text(self.is_negative(), &digits, self.scale, |piece| {
            f.write_str(piece)
        })
    }
}

/// A decimal's text, handed to `put` piece by piece: plain notation with exactly `scale`
/// digits after the point. A negative scale, or a scale far beyond the digits, is written as
/// an exponent (`123E+3`, `5E-40`): Python's `Decimal` reads both forms to the same digits and
/// exponent.
fn write_text(
    negative: bool,
    digits: &str,
    scale: i32,
    mut put: impl FnMut(&str) -> fmt::Result,
) -> fmt::Result {
    if negative {
        put("-")?;
    }
    if scale <= 0 {
        put(digits)?;
        if scale < 0 {
            put("E+")?;
            put(itoa::Buffer::new().format(-i64::from(scale)))?;
        }
        return Ok(());
    }
    let scale = scale as usize;
    if scale > digits.len() + MAX_LEADING_ZEROS {
        put(digits)?;
        put("E-")?;
        return put(itoa::Buffer::new().format(scale));
    }
    if digits.len() > scale {
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        put(whole)?;
        put(".")?;
        put(fraction)
    } else {
        put("0.")?;
        for _ in digits.len()..scale {
            put("0")?;
        }
        put(digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_wider_than_a_format_width_prints() {
        // 27,300 bytes make about 65,700 digits: a scale just above them needs leading zeros
        // past what `{:0>width$}` accepts (16 bits).
        let decimal = Decimal {
            unscaled: vec![0x7f; 27_300].into(),
            scale: 65_755,
        };
        let text = decimal.to_string();
        assert!(text.starts_with("0.0"), "{}", &text[..20]);
        assert_eq!(text.len(), 2 + 65_755);
    }

    fn decimal(unscaled: i128, scale: i32) -> Decimal {
        // The shortest two's-complement form, as Java's BigInteger.toByteArray writes it.
        let bytes = unscaled.to_be_bytes();
        let fill = if unscaled < 0 { 0xff } else { 0 };
        let mut start = 0;
        while start < 15 && bytes[start] == fill && (bytes[start + 1] & 0x80) == (fill & 0x80) {
            start += 1;
        }
        Decimal::new(&bytes[start..], scale).unwrap()
    }

    #[test]
    fn small_text_is_the_display_text() {
        let mut out = [0; SMALL_TEXT_BYTES];
        for (unscaled, scale) in [
            (-123_456_789, 4),
            (0, 2),
            (0, 0),
            (5, 3),
            (-5, 3),
            (42, 0),
            (-128, 0),
            (i128::MIN, 0),
            (i128::MIN, 39),
            (i128::MAX, 38),
            (-1, 33),
            (5, 33),
            (123_456, 2),
            (123, -3),
            (5, 40),
            (-5, i32::MAX),
            (i128::MIN, i32::MIN),
        ] {
            let decimal = decimal(unscaled, scale);
            assert_eq!(
                decimal.small_text(&mut out),
                Some(decimal.to_string().as_str())
            );
        }
        // Left to `Display`: an integer wider than 128 bits.
        let wide = Decimal::new(&[0x7f; 17], 2).unwrap();
        assert_eq!(wide.small_text(&mut out), None);
    }

    #[test]
    fn small_decimals() {
        assert_eq!(decimal(-123_456_789, 4).to_string(), "-12345.6789");
        assert_eq!(decimal(123_456_789, 4).to_string(), "12345.6789");
        assert_eq!(decimal(0, 2).to_string(), "0.00");
        assert_eq!(decimal(0, 0).to_string(), "0");
        assert_eq!(decimal(5, 3).to_string(), "0.005");
        assert_eq!(decimal(-5, 3).to_string(), "-0.005");
        assert_eq!(decimal(42, 0).to_string(), "42");
        assert_eq!(decimal(-1, 0).to_string(), "-1");
        assert_eq!(decimal(123, -3).to_string(), "123E+3");
        assert_eq!(decimal(-128, 0).to_string(), "-128");
        assert_eq!(decimal(i128::MIN, 0).to_string(), i128::MIN.to_string());
        assert_eq!(
            decimal(i128::MAX, 38).to_string(),
            "1.70141183460469231731687303715884105727"
        );
        assert_eq!(Decimal::new(&[], 1).unwrap().to_string(), "0.0");
        assert_eq!(decimal(5, 40).to_string(), "5E-40");
        assert_eq!(decimal(-5, i32::MAX).to_string(), "-5E-2147483647");
        assert_eq!(decimal(5, 33).to_string(), format!("0.{}5", "0".repeat(32)));
    }

    #[test]
    fn big_decimals_beyond_i128() {
        // 10^40 = 0x1D6329F1C35CA4BFABB9F5610000000000, and its negation.
        let ten_to_40 = vec![
            0x1d, 0x63, 0x29, 0xf1, 0xc3, 0x5c, 0xa4, 0xbf, 0xab, 0xb9, 0xf5, 0x61, 0x00, 0x00,
            0x00, 0x00, 0x00,
        ];
        let positive = Decimal::new(&ten_to_40, 2).unwrap();
        assert_eq!(positive.to_string(), format!("1{}.00", "0".repeat(38)));
        let negative = Decimal::new(&negate(&ten_to_40), 0).unwrap();
        assert!(negative.is_negative());
        assert_eq!(negative.to_string(), format!("-1{}", "0".repeat(40)));
        // Sign-extended with redundant leading bytes, as some encoders write it.
        let mut padded = vec![0, 0, 0];
        padded.extend_from_slice(&ten_to_40);
        assert_eq!(
            Decimal::new(&padded, 0).unwrap().unscaled_digits(),
            format!("1{}", "0".repeat(40))
        );
        // 2^255 - 1: 77 digits.
        let mut max = vec![0x7f];
        max.extend_from_slice(&[0xff; 31]);
        assert_eq!(
            Decimal::new(&max, 0).unwrap().to_string(),
            "57896044618658097711785492504343953926634992332820282019728792003956564819967"
        );
    }

    #[test]
    fn the_largest_numeric_is_fast_and_larger_is_refused() {
        let huge = vec![0x7f; MAX_UNSCALED_BYTES];
        let started = std::time::Instant::now();
        let digits = Decimal::new(&huge, 0).unwrap().unscaled_digits();
        assert!(digits.len() > 157_000, "{}", digits.len());
        assert!(started.elapsed().as_secs() < 10);
        let error = Decimal::new(&vec![1; MAX_UNSCALED_BYTES + 1], 0).unwrap_err();
        assert!(error
            .to_string()
            .contains("larger than any database stores"));
    }
}
