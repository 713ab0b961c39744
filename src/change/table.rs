//! Table naming: which table a change belongs to when the envelope does not say. A flat row
//! names its table in its record name (Bottled Water: the table itself, with bytes outside
//! `[A-Za-z0-9_]` escaped as `_xx_`; Debezium's unwrapped rows: `<prefix>.<schema>.<table>.Value`),
//! and a tombstone, which has no schema, takes the last part of its topic name.

/// The table a flat-row record names. Debezium's unwrapped rows are records called `Value`
/// named `<prefix>.<schema>.<table>.Value`; Bottled Water names the record after the table,
/// escaping bytes outside `[A-Za-z0-9_]` as `_xx_`.
pub(crate) fn table_from_record_name(full_name: &str, connect_name: Option<&str>) -> String {
    let name = connect_name.unwrap_or(full_name);
    let mut parts = name.rsplit('.');
    let last = parts.next().unwrap_or(name);
    match (last, parts.next()) {
        ("Value", Some(table)) => table.to_owned(),
        _ => unescape_bottled_water(last),
    }
}

/// The table part of a topic name (`[prefix.][schema.]table`).
pub(super) fn table_from_topic(topic: &str) -> String {
    unescape_bottled_water(topic.rsplit('.').next().unwrap_or(topic))
}

/// Undo Bottled Water's `_xx_` escaping of bytes in names (`cr_c3__aa_pes` is `crêpes`).
fn unescape_bottled_water(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' && i + 3 < bytes.len() && bytes[i + 3] == b'_' {
            let hex = &bytes[i + 1..i + 3];
            let lower_hex = hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if lower_hex {
                let text = std::str::from_utf8(hex).expect("hex digits are ASCII");
                out.push(u8::from_str_radix(text, 16).expect("two hex digits"));
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(table) => table,
        // Not an escaped name after all: keep it as written.
        Err(_) => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bottled_water_names_are_unescaped() {
        assert_eq!(unescape_bottled_water("cr_c3__aa_pes"), "crêpes");
        assert_eq!(unescape_bottled_water("person_2f_name"), "person/name");
        assert_eq!(unescape_bottled_water("order_items"), "order_items");
        assert_eq!(unescape_bottled_water("a_zz_b"), "a_zz_b");
        // Upper-case hex is not Bottled Water's escaping.
        assert_eq!(unescape_bottled_water("a_2F_b"), "a_2F_b");
        // Escapes that do not make UTF-8 leave the name as written.
        assert_eq!(unescape_bottled_water("x_ff_y"), "x_ff_y");
    }

    #[test]
    fn tables_from_record_names() {
        assert_eq!(
            table_from_record_name("com.martinkl.bottledwater.dbschema.public.orders", None),
            "orders"
        );
        assert_eq!(
            table_from_record_name("shop.public.order_lines.Value", None),
            "order_lines"
        );
        assert_eq!(
            table_from_record_name("Value", Some("shop.public.customers.Value")),
            "customers"
        );
        assert_eq!(table_from_record_name("cr_c3__aa_pes", None), "crêpes");
    }

    #[test]
    fn tables_from_topics() {
        assert_eq!(table_from_topic("shop.public.cr_c3__aa_pes"), "crêpes");
        assert_eq!(table_from_topic("orders"), "orders");
        assert_eq!(table_from_topic("shop.public.order_lines"), "order_lines");
    }
}
