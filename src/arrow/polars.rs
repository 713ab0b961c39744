//! A batch polars can import: polars reads neither `month_day_nano` intervals nor `decimal256`,
//! so `ChangeBatch.to_polars()` replaces such top-level columns by a struct of the interval's
//! parts and by the decimal's exact text.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal256Type, DecimalType, IntervalMonthDayNanoType};
use arrow_array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, StructArray};
use arrow_schema::{ArrowError, DataType, Field, Fields, IntervalUnit, Schema};

/// The batch with the top-level columns polars cannot import replaced: a `month_day_nano`
/// interval by a struct of its parts, a `decimal256` by its text.
pub fn polars_compatible(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let replaced: ArrayRef = match column.data_type() {
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                let intervals = column.as_primitive::<IntervalMonthDayNanoType>();
                let part = |name: &str, data_type: DataType| Field::new(name, data_type, true);
                let parts = Fields::from(vec![
                    part("months", DataType::Int32),
                    part("days", DataType::Int32),
                    part("nanoseconds", DataType::Int64),
                ]);
                let months: Int32Array = intervals.iter().map(|v| v.map(|v| v.months)).collect();
                let days: Int32Array = intervals.iter().map(|v| v.map(|v| v.days)).collect();
                let nanos: Int64Array =
                    intervals.iter().map(|v| v.map(|v| v.nanoseconds)).collect();
                Arc::new(StructArray::try_new(
                    parts,
                    vec![Arc::new(months), Arc::new(days), Arc::new(nanos)],
                    intervals.nulls().cloned(),
                )?)
            }
            DataType::Decimal256(precision, scale) => {
                let decimals = column.as_primitive::<Decimal256Type>();
                let text: StringArray = decimals
                    .iter()
                    .map(|v| v.map(|v| Decimal256Type::format_decimal(v, *precision, *scale)))
                    .collect();
                Arc::new(text)
            }
            _ => {
                fields.push(field.clone());
                columns.push(column.clone());
                continue;
            }
        };
        fields.push(Arc::new(Field::new(
            field.name(),
            replaced.data_type().clone(),
            true,
        )));
        columns.push(replaced);
    }
    let schema = Schema::new_with_metadata(fields, schema.metadata().clone());
    RecordBatch::try_new(Arc::new(schema), columns)
}
