//! Names of topics and tables, interned: the process keeps one copy of each distinct name and
//! never frees it, so a name is a plain pointer that copies without a reference count.
//!
//! Every change carries its topic's name and its table's. Changes are built on the fetch
//! thread and dropped on the application's; with a shared count in each name, the count's
//! cache line would move between the two cores twice per change. There are as many names as
//! topics read and tables named in them, like the record shapes (`avro::RecordShape`).

use std::fmt;
use std::ops::Deref;
use std::sync::Mutex;

use rustc_hash::FxHashSet;

/// An interned topic or table name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(&'static str);

/// Every name interned so far.
static NAMES: Mutex<Option<FxHashSet<&'static str>>> = Mutex::new(None);

impl Name {
    /// The interned copy of `name`.
    pub fn new(name: &str) -> Name {
        let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
        let names = names.get_or_insert_with(FxHashSet::default);
        if let Some(known) = names.get(name) {
            return Name(known);
        }
        let leaked: &'static str = Box::leak(name.into());
        names.insert(leaked);
        Name(leaked)
    }

    /// The name as a string that lives as long as the process.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.0
    }
}

impl From<&str> for Name {
    fn from(name: &str) -> Name {
        Name::new(name)
    }
}

impl From<String> for Name {
    fn from(name: String) -> Name {
        Name::new(&name)
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Name;

    #[test]
    fn equal_names_are_one_copy() {
        let first = Name::new("shop.public.orders");
        let again = Name::from(String::from("shop.public.orders"));
        assert_eq!(first, again);
        assert!(std::ptr::eq(first.as_str(), again.as_str()));
        assert_ne!(first, Name::new("shop.public.customers"));
        assert_eq!(first, "shop.public.orders");
        assert_eq!(
            format!("{first} {first:?}"),
            "shop.public.orders \"shop.public.orders\""
        );
    }
}
