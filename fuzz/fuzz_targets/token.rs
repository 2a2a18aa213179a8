//! Bearer tokens from untrusted bytes: hashing and authentication against a real (in-memory)
//! keyhost database never panic, and an unknown token is never accepted.
#![no_main]
use std::cell::RefCell;

use ghostpii_keyhost::tokens::{self, TokenCheck};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static DB: RefCell<rusqlite::Connection> = RefCell::new({
        let conn = rusqlite::Connection::open_in_memory().expect("in-memory database");
        ghostpii_keyhost::db::migrate(&conn).expect("schema");
        conn
    });
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    assert_eq!(tokens::hash(&token).len(), 64);
    DB.with(|db| {
        let check = tokens::authenticate(&db.borrow(), &token).expect("a lookup, not an error");
        assert!(
            matches!(check, TokenCheck::Unknown),
            "no token was issued in this database"
        );
    });
});
