//! Decimal columns, which widen as their values need: 128-bit, then 256-bit integers, then
//! exact text.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::types::{Decimal128Type, Decimal256Type, DecimalType};
use arrow_array::{ArrayRef, Decimal128Array, Decimal256Array};
use arrow_buffer::{i256, NullBufferBuilder, ScalarBuffer};
use arrow_schema::DataType;
use smallvec::SmallVec;

use crate::avro::Decimal;

/// A decimal column. Its representation widens as values need it (see the module
/// documentation): 128-bit, then 256-bit integers, then exact text.
pub(super) struct DecimalColumn {
    pub(super) scale: i32,
    pub(super) values: DecimalValues,
    pub(super) nulls: NullBufferBuilder,
}

pub(super) enum DecimalValues {
    Narrow(Vec<i128>),
    Wide(Vec<i256>),
    Text(StringBuilder),
}

impl DecimalColumn {
    pub(super) fn new(scale: i32, fixed_size: Option<usize>, rows: usize) -> DecimalColumn {
        let values = match (scale, fixed_size.unwrap_or(0)) {
            (0..=38, 0..=16) => DecimalValues::Narrow(Vec::with_capacity(rows)),
            (0..=76, 0..=32) => DecimalValues::Wide(Vec::with_capacity(rows)),
            _ => DecimalValues::Text(StringBuilder::with_capacity(rows, rows * 8)),
        };
        DecimalColumn {
            scale,
            values,
            nulls: NullBufferBuilder::new(rows),
        }
    }

    pub(super) fn data_type(&self) -> DataType {
        // The scale is checked to be in range for the representation when it is chosen.
        let scale = self.scale as i8;
        match self.values {
            DecimalValues::Narrow(_) => DataType::Decimal128(Decimal128Type::MAX_PRECISION, scale),
            DecimalValues::Wide(_) => DataType::Decimal256(Decimal256Type::MAX_PRECISION, scale),
            DecimalValues::Text(_) => DataType::Utf8,
        }
    }

    pub(super) fn append_null(&mut self) {
        match &mut self.values {
            DecimalValues::Narrow(values) => values.push(0),
            DecimalValues::Wide(values) => values.push(i256::ZERO),
            DecimalValues::Text(text) => text.append_null(),
        }
        self.nulls.append_null();
    }

    pub(super) fn append(&mut self, decimal: &Decimal) {
        self.append_unscaled(&decimal.unscaled, decimal.scale);
    }

    /// Append the decimal of these unscaled two's-complement bytes and scale.
    pub(super) fn append_unscaled(&mut self, unscaled: &[u8], scale: i32) {
        // A value of another scale (no schema writes one) keeps its digits as text.
        if scale != self.scale {
            self.widen_to_text();
        }
        if let DecimalValues::Narrow(values) = &mut self.values {
            match i128_of(unscaled) {
                Some(value) if Decimal128Type::is_valid_decimal_precision(value, 38) => {
                    values.push(value);
                    self.nulls.append_non_null();
                    return;
                }
                _ => self.widen(),
            }
        }
        if let DecimalValues::Wide(values) = &mut self.values {
            match i256_of(unscaled) {
                Some(value) if Decimal256Type::is_valid_decimal_precision(value, 76) => {
                    values.push(value);
                    self.nulls.append_non_null();
                    return;
                }
                _ => self.widen_to_text(),
            }
        }
        if let DecimalValues::Text(text) = &mut self.values {
            let decimal = Decimal {
                unscaled: SmallVec::from_slice(unscaled),
                scale,
            };
            // Writing to a string builder cannot fail.
            let _ = write!(text, "{decimal}");
            text.append_value("");
            self.nulls.append_non_null();
        }
    }

    /// From 128-bit to 256-bit integers (the scale fits: Wide allows more than Narrow).
    pub(super) fn widen(&mut self) {
        if let DecimalValues::Narrow(values) = &mut self.values {
            let wide = values.iter().map(|&v| i256::from_i128(v)).collect();
            self.values = DecimalValues::Wide(wide);
        }
    }

    /// To text, writing the values so far as the row iterator would.
    pub(super) fn widen_to_text(&mut self) {
        let nulls = self.nulls.finish_cloned();
        let is_null = |i: usize| nulls.as_ref().is_some_and(|n| n.is_null(i));
        let bytes: Vec<Option<SmallVec<[u8; 16]>>> = match &self.values {
            DecimalValues::Narrow(values) => values
                .iter()
                .enumerate()
                .map(|(i, v)| (!is_null(i)).then(|| SmallVec::from_slice(&v.to_be_bytes())))
                .collect(),
            DecimalValues::Wide(values) => values
                .iter()
                .enumerate()
                .map(|(i, v)| (!is_null(i)).then(|| SmallVec::from_slice(&v.to_be_bytes())))
                .collect(),
            DecimalValues::Text(_) => return,
        };
        let mut text = StringBuilder::with_capacity(bytes.len(), bytes.len() * 8);
        for unscaled in bytes {
            match unscaled {
                Some(unscaled) => {
                    let decimal = Decimal {
                        unscaled,
                        scale: self.scale,
                    };
                    let _ = write!(text, "{decimal}");
                    text.append_value("");
                }
                None => text.append_null(),
            }
        }
        self.values = DecimalValues::Text(text);
    }

    pub(super) fn finish(mut self) -> std::result::Result<ArrayRef, String> {
        let nulls = self.nulls.finish();
        let scale = self.scale as i8;
        let arrow = |e: arrow_schema::ArrowError| e.to_string();
        let array: ArrayRef = match self.values {
            DecimalValues::Narrow(values) => Arc::new(
                Decimal128Array::new(ScalarBuffer::from(values), nulls)
                    .with_precision_and_scale(Decimal128Type::MAX_PRECISION, scale)
                    .map_err(arrow)?,
            ),
            DecimalValues::Wide(values) => Arc::new(
                Decimal256Array::new(ScalarBuffer::from(values), nulls)
                    .with_precision_and_scale(Decimal256Type::MAX_PRECISION, scale)
                    .map_err(arrow)?,
            ),
            DecimalValues::Text(mut text) => Arc::new(text.finish()),
        };
        Ok(array)
    }
}

/// A big-endian two's-complement integer as `i128`, if it fits (redundant sign bytes allowed).
pub(super) fn i128_of(bytes: &[u8]) -> Option<i128> {
    let (fill, digits) = significant(bytes, 16)?;
    let mut wide = [fill; 16];
    wide[16 - digits.len()..].copy_from_slice(digits);
    Some(i128::from_be_bytes(wide))
}

pub(super) fn i256_of(bytes: &[u8]) -> Option<i256> {
    let (fill, digits) = significant(bytes, 32)?;
    let mut wide = [fill; 32];
    wide[32 - digits.len()..].copy_from_slice(digits);
    Some(i256::from_be_bytes(wide))
}

/// The sign-extension byte and the bytes that matter, if at most `width` of them do.
pub(super) fn significant(bytes: &[u8], width: usize) -> Option<(u8, &[u8])> {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0 };
    let mut digits = bytes;
    // Drop leading sign bytes while the next byte still carries the sign.
    while digits.len() > width
        && digits[0] == fill
        && digits.get(1).is_some_and(|b| (b & 0x80 != 0) == negative)
    {
        digits = &digits[1..];
    }
    (digits.len() <= width).then_some((fill, digits))
}
