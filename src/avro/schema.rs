//! Parsing Avro schema JSON into a compact, index-linked tree.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::logical::{self, Logical};
use super::value::Temporal;
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
            Named::Record(r) => &r.name,
            Named::Enum(e) => &e.name,
            Named::Fixed(f) => &f.name,
        }
    }
}

/// A record type.
#[derive(Debug, Clone)]
pub struct RecordDef {
    /// Full name.
    pub name: Arc<str>,
    /// Field names in order, shared with every decoded record.
    pub field_names: Arc<[Arc<str>]>,
    /// Field types in order.
    pub fields: Vec<Node>,
    /// Kafka Connect's `connect.name` property, when present (Debezium sets it).
    pub connect_name: Option<String>,
    /// What the record means as one value (a Bottled Water date, a Debezium
    /// `VariableScaleDecimal`), if anything.
    pub logical: Option<Logical>,
}

impl RecordDef {
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
}

impl Schema {
    /// Parse the JSON text of an Avro schema.
    pub fn parse(text: &str) -> Result<Schema> {
        let json: Json = serde_json::from_str(text)
            .map_err(|e| Error::decode(format!("schema is not valid JSON: {e}")))?;
        let mut parser = Parser::default();
        let root = parser.node(&json, "")?;
        let named = parser
            .named
            .into_iter()
            .map(|n| n.expect("every reserved named type is defined before parsing ends"))
            .collect();
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
        }
        let connect_name = object
            .get("connect.name")
            .and_then(Json::as_str)
            .map(str::to_owned);
        let logical = logical::of_record(&full_name, connect_name.as_deref(), &names, &nodes);
        self.named[slot] = Some(Named::Record(RecordDef {
            name: full_name.into(),
            field_names: names.into(),
            fields: nodes,
            connect_name,
            logical,
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
        self.named[slot] = Some(Named::Enum(EnumDef {
            name: full_name.into(),
            symbols,
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
        assert_eq!(&*root.name, "com.example.public.users");
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

    #[test]
    fn unknown_reference_is_an_error() {
        let error = Schema::parse(r#"{"type":"array","items":"Missing"}"#).unwrap_err();
        assert!(error.to_string().contains("unknown type \"Missing\""));
    }
}
