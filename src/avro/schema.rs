//! Parsing Avro schema JSON into a compact, index-linked tree.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::decode::MAX_DEPTH;
use super::logical::{self, Logical};
use super::value::{Record, RecordShape, Temporal, Value};
use crate::error::{Error, Result};

/// A parsed writer schema, ready to decode message bodies.
#[derive(Debug, Clone)]
pub struct Schema {
    /// The top-level type.
    pub root: Node,
    /// Every named type (record, enum, fixed) the schema defines, referenced by [`Node::Named`].
    pub named: Vec<Named>,
}

/// One type in a schema tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null`.
    Null,
    /// `boolean`.
    Boolean,
    /// `int`.
    Int,
    /// `long`.
    Long,
    /// `float`.
    Float,
    /// `double`.
    Double,
    /// `bytes`.
    Bytes,
    /// `string`.
    String,
    /// `array`; `items_can_be_empty` is true when an item may encode to zero bytes, which
    /// bounds how many items a message may claim (see the decoder).
    Array {
        /// The item type.
        items: Box<Node>,
        /// Whether one item may take zero bytes.
        items_can_be_empty: bool,
    },
    /// `map` with string keys.
    Map(Box<Node>),
    /// A union, branches in the writer's order.
    Union(Vec<Node>),
    /// A named type: an index into [`Schema::named`].
    Named(usize),
    /// A primitive (or Bottled Water's `SpecialTime` enum) with a meaning beyond its encoding,
    /// e.g. a `long` that is a timestamp. Named types keep their meaning in their definition
    /// instead ([`FixedDef::logical`], [`RecordDef::logical`]), so every reference shares it.
    Logical(Box<LogicalNode>),
}

/// A type read as its `base` encoding and then turned into a semantic value.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalNode {
    /// What the value means.
    pub logical: Logical,
    /// How it is encoded.
    pub base: Node,
}

/// A named type definition.
#[derive(Debug, Clone)]
pub enum Named {
    /// A record.
    Record(RecordDef),
    /// An enum.
    Enum(EnumDef),
    /// A fixed-size byte string.
    Fixed(FixedDef),
}

impl Named {
    /// The full name (`namespace.name`).
    pub fn full_name(&self) -> &str {
        match self {
            Named::Record(r) => r.name(),
            Named::Enum(e) => &e.name,
            Named::Fixed(f) => &f.name,
        }
    }
}

/// A record type.
#[derive(Debug, Clone)]
pub struct RecordDef {
    /// The full name and the field names, shared with every decoded record.
    pub shape: &'static RecordShape,
    /// Field types in order.
    pub fields: Vec<Node>,
    /// Kafka Connect's `connect.name` property, when present (Debezium sets it).
    pub connect_name: Option<String>,
    /// What the record means as one value (a Bottled Water date, a Debezium
    /// `VariableScaleDecimal`), if anything.
    pub logical: Option<Logical>,
    /// Other full names of the record (`aliases`), which a reader schema uses to accept data
    /// written under an old name.
    pub aliases: Vec<Arc<str>>,
    /// Each field's other names (its `aliases`), in field order.
    pub field_aliases: Vec<Vec<Arc<str>>>,
    /// Each field's `default`, in field order: what schema resolution fills in when the writer
    /// has no such field.
    pub defaults: Vec<FieldDefault>,
}

/// The `default` of a record field, decoded at parse time into the value the field would hold
/// (logical types applied, e.g. a `date` default `0` is [`Value::Date`]`(0)`).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldDefault {
    /// The field has no `default`.
    Absent,
    /// The field's default value.
    Value(Value),
    /// The field has a `default` that is not a value of its type; why. Such a default only
    /// matters (as an error) when schema resolution needs it.
    Invalid(String),
}

impl RecordDef {
    /// The full name.
    pub fn name(&self) -> &Arc<str> {
        &self.shape.name
    }

    /// Field names in order.
    pub fn field_names(&self) -> &Arc<[Arc<str>]> {
        &self.shape.names
    }

    /// Whether Kafka Connect wrote this record (it names its schemas), which is where Debezium's
    /// placeholder for unavailable values can appear.
    pub fn is_kafka_connect(&self) -> bool {
        self.connect_name.is_some()
    }
}

/// An enum type.
#[derive(Debug, Clone)]
pub struct EnumDef {
    /// Full name.
    pub name: Arc<str>,
    /// Symbols in order.
    pub symbols: Vec<Arc<str>>,
    /// Other full names of the enum (`aliases`).
    pub aliases: Vec<Arc<str>>,
    /// The symbol a reader uses for a symbol it does not know (`default`), if the schema names
    /// one of its symbols.
    pub default: Option<Arc<str>>,
}

/// A fixed type.
#[derive(Debug, Clone)]
pub struct FixedDef {
    /// Full name.
    pub name: Arc<str>,
    /// Size in bytes.
    pub size: usize,
    /// The logical type (`decimal`, `uuid`, `duration`), if valid.
    pub logical: Option<Logical>,
    /// Other full names of the fixed type (`aliases`).
    pub aliases: Vec<Arc<str>>,
}

impl Schema {
    /// Parse the JSON text of an Avro schema.
    pub fn parse(text: &str) -> Result<Schema> {
        let json: Json = serde_json::from_str(text)
            .map_err(|e| Error::decode(format!("schema is not valid JSON: {e}")))?;
        let mut parser = Parser::default();
        let root = parser.node(&json, "")?;
        let mut named: Vec<Named> = parser
            .named
            .into_iter()
            .map(|n| n.expect("every reserved named type is defined before parsing ends"))
            .collect();
        // Defaults can name any type of the schema, including ones defined after the field (or
        // the record itself), so they are decoded once every type is known.
        let mut expander = DefaultExpander {
            named: &named,
            raw: &parser.defaults,
            fuel: DEFAULT_FUEL_BASE
                .saturating_add(text.len().saturating_mul(DEFAULT_FUEL_PER_BYTE)),
        };
        let defaults = parser
            .defaults
            .iter()
            .enumerate()
            .filter(|(_, raw)| !raw.is_empty())
            .map(|(slot, raw)| (slot, expander.record_defaults(slot, raw)))
            .collect::<Vec<_>>();
        for (slot, field_defaults) in defaults {
            if let Named::Record(record) = &mut named[slot] {
                record.defaults = field_defaults;
            }
        }
        Ok(Schema { root, named })
    }

    /// The record definition at the root, if the schema is a record.
    pub fn root_record(&self) -> Option<&RecordDef> {
        match &self.root {
            Node::Named(i) => match &self.named[*i] {
                Named::Record(r) => Some(r),
                _ => None,
            },
            _ => None,
        }
    }

    /// The record definition a node refers to, looking through a union with `null`.
    pub fn record_of(&self, node: &Node) -> Option<&RecordDef> {
        match node {
            Node::Named(i) => match &self.named[*i] {
                Named::Record(r) => Some(r),
                _ => None,
            },
            Node::Union(branches) => branches.iter().find_map(|b| self.record_of(b)),
            _ => None,
        }
    }
}

fn schema_error(reason: impl Into<String>) -> Error {
    Error::decode(format!("unsupported or invalid schema: {}", reason.into()))
}

#[derive(Default)]
struct Parser {
    named: Vec<Option<Named>>,
    index: HashMap<String, usize>,
    /// The JSON `default` of every field of every record, by named-type slot (empty for enums
    /// and fixed types), decoded into values when the whole schema is known.
    defaults: Vec<Vec<Option<Json>>>,
}

impl Parser {
    fn node(&mut self, json: &Json, namespace: &str) -> Result<Node> {
        match json {
            Json::String(name) => self.by_name(name, namespace),
            Json::Array(branches) => {
                let mut nodes = branches
                    .iter()
                    .map(|b| self.node(b, namespace))
                    .collect::<Result<Vec<_>>>()?;
                self.mark_special_time(&mut nodes);
                Ok(Node::Union(nodes))
            }
            Json::Object(object) => self.complex(object, namespace),
            other => Err(schema_error(format!("unexpected JSON {other}"))),
        }
    }

    fn by_name(&mut self, name: &str, namespace: &str) -> Result<Node> {
        if let Some(node) = primitive(name) {
            return Ok(node);
        }
        let qualified = qualify(name, namespace);
        self.index
            .get(&qualified)
            .or_else(|| self.index.get(name))
            .map(|&i| Node::Named(i))
            .ok_or_else(|| schema_error(format!("unknown type {name:?}")))
    }

    fn complex(&mut self, object: &Map<String, Json>, namespace: &str) -> Result<Node> {
        let kind = object
            .get("type")
            .ok_or_else(|| schema_error("object without \"type\""))?;
        let kind = match kind {
            Json::String(kind) => kind.as_str(),
            // {"type": {...}} or {"type": [...]}: a wrapped type.
            nested => return self.node(nested, namespace),
        };
        match kind {
            "record" | "error" => self.record(object, namespace),
            "enum" => self.enumeration(object, namespace),
            "fixed" => self.fixed(object, namespace),
            "array" => {
                let items = object
                    .get("items")
                    .ok_or_else(|| schema_error("array without \"items\""))?;
                let items = self.node(items, namespace)?;
                let items_can_be_empty = self.can_be_empty(&items, &mut Vec::new());
                Ok(Node::Array {
                    items: Box::new(items),
                    items_can_be_empty,
                })
            }
            "map" => {
                let values = object
                    .get("values")
                    .ok_or_else(|| schema_error("map without \"values\""))?;
                Ok(Node::Map(Box::new(self.node(values, namespace)?)))
            }
            other => {
                let node = self.by_name(other, namespace)?;
                // Logical types live on primitive type objects; a reference to a named type
                // cannot change its meaning.
                if matches!(node, Node::Named(_)) {
                    return Ok(node);
                }
                Ok(match logical::of_primitive(&node, object) {
                    Some(logical) => Node::Logical(Box::new(LogicalNode {
                        logical,
                        base: node,
                    })),
                    None => node,
                })
            }
        }
    }

    /// In a union of a Bottled Water date or timestamp record and its `SpecialTime` enum, mark
    /// the enum as that column's infinity. The enum is one shared named type, so the mark goes
    /// on this union's branch, not on the enum's definition.
    fn mark_special_time(&self, branches: &mut [Node]) {
        let temporal = branches.iter().find_map(|branch| {
            let Node::Named(i) = branch else { return None };
            let Some(Named::Record(record)) = &self.named[*i] else {
                return None;
            };
            match record.logical? {
                Logical::BottledWaterDate => Some(Temporal::Date),
                Logical::BottledWaterDateTime { zoned: false } => Some(Temporal::LocalTimestamp),
                Logical::BottledWaterDateTime { zoned: true } => Some(Temporal::ZonedTimestamp),
                _ => None,
            }
        });
        let Some(temporal) = temporal else { return };
        for branch in branches.iter_mut() {
            let Node::Named(i) = *branch else { continue };
            if let Some(Named::Enum(e)) = &self.named[i] {
                if logical::is_special_time(&e.name, &e.symbols) {
                    *branch = Node::Logical(Box::new(LogicalNode {
                        logical: Logical::SpecialTime(temporal),
                        base: Node::Named(i),
                    }));
                }
            }
        }
    }

    /// Reserve a slot for a named type before its body is parsed, so it can refer to itself.
    fn reserve(&mut self, object: &Map<String, Json>, namespace: &str) -> Result<(usize, String)> {
        let name = object
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| schema_error("named type without \"name\""))?;
        let own_namespace = object
            .get("namespace")
            .and_then(Json::as_str)
            .unwrap_or(namespace);
        let full_name = qualify(name, own_namespace);
        if self.index.contains_key(&full_name) {
            return Err(schema_error(format!("type {full_name:?} defined twice")));
        }
        let slot = self.named.len();
        self.named.push(None);
        self.defaults.push(Vec::new());
        self.index.insert(full_name.clone(), slot);
        Ok((slot, full_name))
    }

    fn record(&mut self, object: &Map<String, Json>, namespace: &str) -> Result<Node> {
        let (slot, full_name) = self.reserve(object, namespace)?;
        let inner_namespace = namespace_of(&full_name).to_owned();
        let fields = object
            .get("fields")
            .and_then(Json::as_array)
            .ok_or_else(|| schema_error(format!("record {full_name:?} without \"fields\"")))?;
        let mut names = Vec::with_capacity(fields.len());
        let mut nodes = Vec::with_capacity(fields.len());
        let mut field_aliases = Vec::with_capacity(fields.len());
        let mut raw_defaults = Vec::with_capacity(fields.len());
        for field in fields {
            let name = field
                .get("name")
                .and_then(Json::as_str)
                .ok_or_else(|| schema_error(format!("a field of {full_name:?} has no name")))?;
            let kind = field.get("type").ok_or_else(|| {
                schema_error(format!("field {name:?} of {full_name:?} has no type"))
            })?;
            names.push(Arc::<str>::from(name));
            nodes.push(self.node(kind, &inner_namespace)?);
            field_aliases.push(aliases(field.get("aliases"), None));
            raw_defaults.push(field.get("default").cloned());
        }
        let connect_name = object
            .get("connect.name")
            .and_then(Json::as_str)
            .map(str::to_owned);
        let logical = logical::of_record(&full_name, connect_name.as_deref(), &names, &nodes);
        let defaults = vec![FieldDefault::Absent; nodes.len()];
        self.defaults[slot] = raw_defaults;
        let shape = RecordShape::interned(full_name.into(), names.into());
        self.named[slot] = Some(Named::Record(RecordDef {
            aliases: aliases(object.get("aliases"), Some(&inner_namespace)),
            shape,
            fields: nodes,
            connect_name,
            logical,
            field_aliases,
            defaults,
        }));
        Ok(Node::Named(slot))
    }

    fn enumeration(&mut self, object: &Map<String, Json>, namespace: &str) -> Result<Node> {
        let (slot, full_name) = self.reserve(object, namespace)?;
        let symbols = object
            .get("symbols")
            .and_then(Json::as_array)
            .ok_or_else(|| schema_error(format!("enum {full_name:?} without \"symbols\"")))?
            .iter()
            .map(|s| {
                s.as_str()
                    .map(Arc::<str>::from)
                    .ok_or_else(|| schema_error(format!("enum {full_name:?} symbol {s}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let default = object
            .get("default")
            .and_then(Json::as_str)
            .and_then(|d| symbols.iter().find(|s| ***s == *d).cloned());
        self.named[slot] = Some(Named::Enum(EnumDef {
            aliases: aliases(object.get("aliases"), Some(namespace_of(&full_name))),
            name: full_name.into(),
            symbols,
            default,
        }));
        Ok(Node::Named(slot))
    }

    fn fixed(&mut self, object: &Map<String, Json>, namespace: &str) -> Result<Node> {
        let (slot, full_name) = self.reserve(object, namespace)?;
        let size = object
            .get("size")
            .and_then(Json::as_u64)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| schema_error(format!("fixed {full_name:?} without a valid \"size\"")))?;
        self.named[slot] = Some(Named::Fixed(FixedDef {
            aliases: aliases(object.get("aliases"), Some(namespace_of(&full_name))),
            name: full_name.into(),
            size,
            logical: logical::of_fixed(size, object),
        }));
        Ok(Node::Named(slot))
    }

    /// Whether a value of this type can encode to zero bytes. Types still being defined
    /// (recursion) count as non-empty: a recursive reference needs a union or a collection,
    /// which take at least one byte.
    fn can_be_empty(&self, node: &Node, visiting: &mut Vec<usize>) -> bool {
        match node {
            Node::Null => true,
            Node::Named(i) => {
                if visiting.contains(i) {
                    return false;
                }
                match &self.named[*i] {
                    Some(Named::Record(r)) => {
                        visiting.push(*i);
                        let empty = r.fields.iter().all(|f| self.can_be_empty(f, visiting));
                        visiting.pop();
                        empty
                    }
                    Some(Named::Fixed(f)) => f.size == 0,
                    Some(Named::Enum(_)) | None => false,
                }
            }
            _ => false,
        }
    }
}

fn primitive(name: &str) -> Option<Node> {
    Some(match name {
        "null" => Node::Null,
        "boolean" => Node::Boolean,
        "int" => Node::Int,
        "long" => Node::Long,
        "float" => Node::Float,
        "double" => Node::Double,
        "bytes" => Node::Bytes,
        "string" => Node::String,
        _ => return None,
    })
}

fn qualify(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

fn namespace_of(full_name: &str) -> &str {
    full_name.rsplit_once('.').map(|(ns, _)| ns).unwrap_or("")
}

/// The strings of an `aliases` array (anything else is ignored), qualified with `namespace` for
/// the aliases of named types; field aliases (`namespace` `None`) are plain names.
fn aliases(json: Option<&Json>, namespace: Option<&str>) -> Vec<Arc<str>> {
    let Some(Json::Array(items)) = json else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(Json::as_str)
        .map(|alias| match namespace {
            Some(namespace) => qualify(alias, namespace).into(),
            None => alias.into(),
        })
        .collect()
}

/// A short description of a type for messages: `int`, `record com.example.User`, ...
pub(super) fn describe(named: &[Named], node: &Node) -> String {
    match node {
        Node::Null => "null".into(),
        Node::Boolean => "boolean".into(),
        Node::Int => "int".into(),
        Node::Long => "long".into(),
        Node::Float => "float".into(),
        Node::Double => "double".into(),
        Node::Bytes => "bytes".into(),
        Node::String => "string".into(),
        Node::Array { .. } => "array".into(),
        Node::Map(_) => "map".into(),
        Node::Union(_) => "union".into(),
        Node::Logical(logical) => describe(named, &logical.base),
        Node::Named(i) => match named.get(*i) {
            Some(Named::Record(r)) => format!("record {}", r.name()),
            Some(Named::Enum(e)) => format!("enum {}", e.name),
            Some(Named::Fixed(f)) => format!("fixed {} (size {})", f.name, f.size),
            None => "named type".into(),
        },
    }
}

/// How much decoding field defaults may produce: one unit per value plus one per byte of text.
/// A record default that leaves fields out takes their own defaults, which can in turn be
/// records leaving fields out, so a short schema could otherwise expand exponentially.
const DEFAULT_FUEL_BASE: usize = 4096;
/// Units of [`DEFAULT_FUEL_BASE`] added per byte of schema text.
const DEFAULT_FUEL_PER_BYTE: usize = 4;

/// Decodes the JSON `default`s of record fields into [`Value`]s, per the specification's table:
/// `null`, booleans, integers for `int` and `long`, numbers (or `"NaN"`, `"Infinity"`,
/// `"-Infinity"`) for `float` and `double`, strings for `string` and `enum`, strings of code
/// points 0-255 for `bytes` and `fixed`, arrays, objects for maps and records (a record field
/// left out takes its own default), and for a union the first branch the JSON fits (Avro 1.12;
/// 1.11 allowed only the first branch). Logical types apply to the decoded value.
struct DefaultExpander<'a> {
    named: &'a [Named],
    raw: &'a [Vec<Option<Json>>],
    fuel: usize,
}

impl DefaultExpander<'_> {
    fn record_defaults(&mut self, slot: usize, raw: &[Option<Json>]) -> Vec<FieldDefault> {
        let named = self.named;
        let Some(Named::Record(record)) = named.get(slot) else {
            return Vec::new();
        };
        raw.iter()
            .zip(&record.fields)
            .map(|(json, node)| match json {
                None => FieldDefault::Absent,
                Some(json) => match self.value(json, node, 0) {
                    Ok(value) => FieldDefault::Value(value),
                    Err(reason) => FieldDefault::Invalid(reason),
                },
            })
            .collect()
    }

    fn value(
        &mut self,
        json: &Json,
        node: &Node,
        depth: usize,
    ) -> std::result::Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("the default nests deeper than {MAX_DEPTH}"));
        }
        let cost = 1 + match json {
            Json::String(text) => text.len(),
            _ => 0,
        };
        self.fuel = self.fuel.checked_sub(cost).ok_or_else(|| {
            "the schema's defaults expand to more values than its size allows".to_owned()
        })?;
        let named = self.named;
        let wrong = || format!("{} is not a valid {}", short(json), describe(named, node));
        Ok(match node {
            Node::Null => match json {
                Json::Null => Value::Null,
                _ => return Err(wrong()),
            },
            Node::Boolean => Value::Boolean(json.as_bool().ok_or_else(wrong)?),
            Node::Int => Value::Int(
                json.as_i64()
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or_else(wrong)?,
            ),
            Node::Long => Value::Long(json.as_i64().ok_or_else(wrong)?),
            Node::Float => Value::Float(float(json).ok_or_else(wrong)? as f32),
            Node::Double => Value::Double(float(json).ok_or_else(wrong)?),
            Node::Bytes => Value::Bytes(latin1(json).ok_or_else(wrong)?),
            Node::String => Value::String(json.as_str().ok_or_else(wrong)?.into()),
            Node::Array { items, .. } => Value::Array(
                json.as_array()
                    .ok_or_else(wrong)?
                    .iter()
                    .map(|item| self.value(item, items, depth + 1))
                    .collect::<std::result::Result<_, _>>()?,
            ),
            Node::Map(values) => Value::Map(
                json.as_object()
                    .ok_or_else(wrong)?
                    .iter()
                    .map(|(key, value)| Ok((key.clone(), self.value(value, values, depth + 1)?)))
                    .collect::<std::result::Result<_, String>>()?,
            ),
            Node::Union(branches) => {
                let mut fits = None;
                for branch in branches {
                    if let Ok(value) = self.value(json, branch, depth + 1) {
                        fits = Some(value);
                        break;
                    }
                }
                fits.ok_or_else(|| format!("{} fits no branch of its union", short(json)))?
            }
            Node::Logical(logical) => {
                let base = self.value(json, &logical.base, depth + 1)?;
                logical.logical.apply(base).map_err(reason)?
            }
            Node::Named(i) => match &named[*i] {
                Named::Record(record) => {
                    let object = json.as_object().ok_or_else(wrong)?;
                    let raw = self.raw;
                    let mut values = Vec::with_capacity(record.fields.len());
                    for (k, (name, field)) in
                        record.field_names().iter().zip(&record.fields).enumerate()
                    {
                        let given = object
                            .get(&**name)
                            .or_else(|| raw.get(*i)?.get(k)?.as_ref())
                            .ok_or_else(|| {
                                format!(
                                    "field {name:?} of {} is missing and has no default",
                                    record.name()
                                )
                            })?;
                        let value = self
                            .value(given, field, depth + 1)
                            .map_err(|e| format!("field {name:?} of {}: {e}", record.name()))?;
                        values.push(value);
                    }
                    let value = Value::Record(Record {
                        shape: record.shape,
                        values,
                    });
                    match &record.logical {
                        Some(logical) => logical.apply(value).map_err(reason)?,
                        None => value,
                    }
                }
                Named::Enum(enumeration) => {
                    let symbol = json.as_str().ok_or_else(wrong)?;
                    let symbol = enumeration
                        .symbols
                        .iter()
                        .find(|s| ***s == *symbol)
                        .ok_or_else(wrong)?;
                    Value::Enum(symbol.clone())
                }
                Named::Fixed(fixed) => {
                    let bytes = latin1(json)
                        .filter(|b| b.len() == fixed.size)
                        .ok_or_else(wrong)?;
                    match &fixed.logical {
                        Some(logical) => logical.apply(Value::Fixed(bytes)).map_err(reason)?,
                        None => Value::Fixed(bytes),
                    }
                }
            },
        })
    }
}

/// A JSON number, or the strings Java's Avro writes for non-finite defaults.
fn float(json: &Json) -> Option<f64> {
    match json {
        Json::String(text) => match text.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        other => other.as_f64(),
    }
}

/// A `bytes` or `fixed` default: a string whose code points 0-255 are the bytes.
fn latin1(json: &Json) -> Option<Vec<u8>> {
    json.as_str()?
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

/// A JSON value for a message, cut short if long.
fn short(json: &Json) -> String {
    const MAX: usize = 60;
    let text = json.to_string();
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The reason inside a decode error, without the "cannot decode message" frame.
fn reason(error: Error) -> String {
    match error {
        Error::Decode { reason, .. } => reason,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_types_resolve_through_namespaces() {
        let schema = Schema::parse(
            r#"{"type":"record","name":"users","namespace":"com.example.public","fields":[
                {"name":"created","type":["null",{"type":"record","name":"DateTime",
                    "namespace":"com.example.types","fields":[{"name":"year","type":"int"}]}]},
                {"name":"updated","type":["null","com.example.types.DateTime"]},
                {"name":"state","type":{"type":"enum","name":"State","symbols":["A","B"]}},
                {"name":"again","type":"State"}]}"#,
        )
        .unwrap();
        let root = schema.root_record().unwrap();
        assert_eq!(&**root.name(), "com.example.public.users");
        assert_eq!(root.fields[0], root.fields[1]);
        assert_eq!(root.fields[2], root.fields[3]);
        assert_eq!(schema.named[2].full_name(), "com.example.public.State");
    }

    #[test]
    fn recursive_record() {
        let schema = Schema::parse(
            r#"{"type":"record","name":"Node","fields":[
                {"name":"children","type":{"type":"array","items":"Node"}}]}"#,
        )
        .unwrap();
        let root = schema.root_record().unwrap();
        assert!(matches!(
            &root.fields[0],
            Node::Array { items, items_can_be_empty: false } if **items == Node::Named(0)
        ));
    }

    #[test]
    fn zero_width_items_are_detected() {
        let schema = Schema::parse(r#"{"type":"array","items":"null"}"#).unwrap();
        assert!(matches!(
            schema.root,
            Node::Array {
                items_can_be_empty: true,
                ..
            }
        ));
    }

    fn defaults(schema: &Schema) -> &[FieldDefault] {
        &schema.root_record().unwrap().defaults
    }

    #[test]
    fn defaults_decode_into_values_of_the_field_type() {
        let schema = Schema::parse(
            r#"{"type":"record","name":"r","namespace":"ns","fields":[
                {"name":"none","type":"int"},
                {"name":"debezium","type":[{"type":"int","connect.name":"io.debezium.time.Date"},"null"],"default":0},
                {"name":"nan","type":"double","default":"NaN"},
                {"name":"f","type":"float","default":1},
                {"name":"m","type":{"type":"map","values":"long"},"default":{"k":-1}},
                {"name":"hash","type":{"type":"fixed","name":"H","size":2},"default":"\u0001\u00ff"},
                {"name":"kind","type":{"type":"enum","name":"K","symbols":["A","B"],"default":"B"},"default":"A"},
                {"name":"day","type":{"type":"record","name":"Date","namespace":"com.martinkl.bottledwater.datatypes",
                    "fields":[{"name":"year","type":"int"},{"name":"month","type":"int"},{"name":"day","type":"int"}]},
                    "default":{"year":1970,"month":1,"day":2}},
                {"name":"self","type":["null","r"],"default":null},
                {"name":"bad","type":"int","default":2147483648},
                {"name":"bad_union","type":["null","int"],"default":"x"},
                {"name":"bad_record","type":"com.martinkl.bottledwater.datatypes.Date","default":{"year":1}}],
                "aliases":["old"]}"#,
        )
        .unwrap();
        let defaults = defaults(&schema);
        assert_eq!(defaults[0], FieldDefault::Absent);
        assert_eq!(defaults[1], FieldDefault::Value(Value::Date(0)));
        assert!(matches!(defaults[2], FieldDefault::Value(Value::Double(d)) if d.is_nan()));
        assert_eq!(defaults[3], FieldDefault::Value(Value::Float(1.0)));
        assert_eq!(
            defaults[4],
            FieldDefault::Value(Value::Map(vec![("k".into(), Value::Long(-1))]))
        );
        assert_eq!(
            defaults[5],
            FieldDefault::Value(Value::Fixed(vec![1, 0xff]))
        );
        assert_eq!(defaults[6], FieldDefault::Value(Value::Enum("A".into())));
        assert_eq!(defaults[7], FieldDefault::Value(Value::Date(1)));
        assert_eq!(defaults[8], FieldDefault::Value(Value::Null));
        for (i, reason) in [
            (9, "2147483648 is not a valid int"),
            (10, "\"x\" fits no branch of its union"),
            (
                11,
                "field \"month\" of com.martinkl.bottledwater.datatypes.Date is missing",
            ),
        ] {
            assert!(
                matches!(&defaults[i], FieldDefault::Invalid(why) if why.contains(reason)),
                "{i}: {:?}",
                defaults[i]
            );
        }
        let root = schema.root_record().unwrap();
        assert_eq!(&*root.aliases[0], "ns.old");
        let Named::Enum(kind) = &schema.named[2] else {
            panic!("not the enum")
        };
        assert_eq!(kind.default.as_deref(), Some("B"));
    }

    #[test]
    fn defaults_cannot_expand_exponentially() {
        // R0 {a: R1 = {}, b: R1 = {}}, R1 {a: R2 = {}, b: R2 = {}}, ...: each empty default takes
        // its fields' defaults, 2^40 values in all.
        let mut text = String::new();
        for i in 0..40 {
            text.push_str(&format!(
                r#"{{"type":"record","name":"R{i}","fields":[{{"name":"b","default":{{}},"type":"#
            ));
        }
        text.push_str(
            r#"{"type":"record","name":"R40","fields":[{"name":"x","type":"int","default":1}]}"#,
        );
        for i in (0..40).rev() {
            text.push_str(&format!(
                r#"}},{{"name":"a","type":"R{}","default":{{}}}}]}}"#,
                i + 1
            ));
        }
        let start = std::time::Instant::now();
        let schema = Schema::parse(&text).unwrap();
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(defaults(&schema)
            .iter()
            .any(|d| matches!(d, FieldDefault::Invalid(why) if why.contains("expand"))));
    }

    #[test]
    fn unknown_reference_is_an_error() {
        let error = Schema::parse(r#"{"type":"array","items":"Missing"}"#).unwrap_err();
        assert!(error.to_string().contains("unknown type \"Missing\""));
    }
}
