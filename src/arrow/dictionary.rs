//! Dictionary values shared across batches. The `_op` names, each enum's symbols and each set
//! of topic names are one Arrow array per process, so batches (and the pieces one batch is
//! joined from) with the same dictionary hold the same buffers. Arrow joins dictionaries that
//! share their buffers into one; others it may join by repeating their values, which pandas
//! refuses as categories.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, StringArray};

/// At most this many dictionaries are kept; past it the cache starts again (a stream whose
/// batches name ever new sets of topics must not grow it without bound).
const MOST_KEPT: usize = 1024;

static SHARED: Mutex<Option<HashMap<Vec<String>, ArrayRef>>> = Mutex::new(None);

/// The dictionary values holding `names`, in order, shared with every other batch.
pub(super) fn shared_values<'a>(names: impl Iterator<Item = &'a str>) -> ArrayRef {
    let names = names.map(str::to_owned).collect::<Vec<_>>();
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let shared = shared.get_or_insert_with(HashMap::new);
    if let Some(values) = shared.get(&names) {
        return values.clone();
    }
    if shared.len() >= MOST_KEPT {
        shared.clear();
    }
    let values: ArrayRef = Arc::new(StringArray::from_iter_values(&names));
    shared.insert(names, values.clone());
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    #[test]
    fn equal_names_share_their_buffers() {
        let a = shared_values(["insert", "update"].into_iter());
        let b = shared_values(["insert", "update"].into_iter());
        let c = shared_values(["update", "insert"].into_iter());
        assert!(a.to_data().ptr_eq(&b.to_data()));
        assert!(!a.to_data().ptr_eq(&c.to_data()));
        assert_eq!(c.len(), 2);
    }
}
