//! The store on a real PostgreSQL: what differs from SQLite and must not show.
//!
//! Each test makes a database of its own in the cluster KILN_TEST_POSTGRES names (the
//! URL of its `postgres` database; scripts/test.sh starts one). Without it the tests
//! say so and pass, except in CI, where a missing cluster is a failure.

use kiln_store::db::params;
use kiln_store::{key_pairs, leases, Location, Scope, Store, StoreError};

fn admin() -> Option<String> {
    match std::env::var("KILN_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("KILN_TEST_POSTGRES is not set: scripts/test.sh starts a cluster and sets it")
        }
        _ => {
            eprintln!("KILN_TEST_POSTGRES is not set: the PostgreSQL store tests did not run");
            None
        }
    }
}

/// A new empty database; its URL.
fn database(admin: &str) -> String {
    let name = format!("kiln_store_test_{}_{}", std::process::id(), rand_suffix());
    let mut c = postgres::Client::connect(admin, postgres::NoTls).expect("connect to the cluster");
    c.batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
    let (base, _) = admin.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    (t ^ (N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 40)) % 1_000_000_007
}

fn open(url: &str) -> Store {
    Store::open_at(&Location::Postgres(url.to_owned())).expect("open the PostgreSQL store")
}

fn scope() -> Scope {
    Scope { account: "111122223333".into(), region: "us-east-1".into() }
}

fn account(s: &Store) {
    s.write(|tx| {
        tx.execute(
            "INSERT INTO accounts (id, name, is_provider, created_at) VALUES ('111122223333', 'a', 0, 'now')",
            (),
        )?;
        Ok::<_, StoreError>(())
    })
    .expect("account");
}

fn key(name: &str) -> key_pairs::KeyPair {
    key_pairs::KeyPair {
        id: format!("key-{name}"),
        name: name.into(),
        key_type: "ed25519".into(),
        fingerprint: "f".into(),
        public_key: "p".into(),
        created_at: "now".into(),
    }
}

#[test]
fn a_handled_unique_violation_leaves_the_transaction_usable() {
    let Some(admin) = admin() else { return };
    let s = open(&database(&admin));
    account(&s);
    let (dup, next) = s
        .write(|tx| {
            assert!(key_pairs::insert(tx, &scope(), &key("one"))?);
            // Taken: false, as on SQLite, and the transaction goes on.
            let dup = key_pairs::insert(tx, &scope(), &key2("one"))?;
            let next = key_pairs::insert(tx, &scope(), &key("two"))?;
            Ok::<_, StoreError>((dup, next))
        })
        .expect("write");
    assert_eq!((dup, next), (false, true));
    assert_eq!(key_names(&s), ["one", "two"]);
}

/// The key pairs' names in the test scope, as listed.
fn key_names(s: &Store) -> Vec<String> {
    s.read(|c| key_pairs::list(c, &scope())).expect("list").into_iter().map(|k| k.name).collect()
}

fn key2(name: &str) -> key_pairs::KeyPair {
    key_pairs::KeyPair { id: format!("key-{name}-2"), ..key(name) }
}

#[test]
fn text_orders_bytewise_as_on_sqlite() {
    let Some(admin) = admin() else { return };
    let s = open(&database(&admin));
    account(&s);
    s.write(|tx| {
        for n in ["b", "B", "a", "_x", "Z"] {
            key_pairs::insert(tx, &scope(), &key(n))?;
        }
        Ok::<_, StoreError>(())
    })
    .expect("keys");
    assert_eq!(key_names(&s), ["B", "Z", "_x", "a", "b"]);
}

#[test]
fn leases_lapse_and_move_on_postgres() {
    let Some(admin) = admin() else { return };
    let url = database(&admin);
    let (one, two) = (open(&url), open(&url));
    assert!(one.write(|tx| leases::hold(tx, "host", "a", 1_000, 10_000)).expect("a takes"));
    assert!(!two.write(|tx| leases::hold(tx, "host", "b", 10_999, 10_000)).expect("not yet"));
    assert!(two.write(|tx| leases::hold(tx, "host", "b", 11_001, 10_000)).expect("lapsed"));
    assert!(!one.write(|tx| leases::hold(tx, "host", "a", 11_002, 10_000)).expect("b's now"));
    let held = one.read(leases::all).expect("all");
    assert_eq!((held.len(), held[0].holder.as_str()), (1, "b"));
}

#[test]
fn every_servers_writes_move_the_generation() {
    let Some(admin) = admin() else { return };
    let url = database(&admin);
    let (one, two) = (open(&url), open(&url));
    let before = two.commits();
    account(&one);
    assert_ne!(two.commits(), before, "a write by another server must invalidate caches");
    // A dry run changes nothing, the generation included.
    let at = one.commits();
    let _ = kiln_store::dry_run(|| one.write(|tx| key_pairs::insert(tx, &scope(), &key("dry"))).expect("dry"));
    assert_eq!(one.commits(), at);
    assert!(one.read(|c| key_pairs::list(c, &scope())).expect("list").is_empty());
}

#[test]
fn servers_starting_together_migrate_once() {
    let Some(admin) = admin() else { return };
    let url = database(&admin);
    let stores: Vec<Store> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..4).map(|_| sc.spawn(|| open(&url))).collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for s in &stores {
        assert_eq!(s.schema_version().expect("version"), kiln_store::known_schema_version());
    }
}

#[test]
fn tags_go_with_their_resource_by_trigger() {
    let Some(admin) = admin() else { return };
    let s = open(&database(&admin));
    account(&s);
    s.write(|tx| {
        tx.execute_batch(
            "INSERT INTO vpcs (id, account_id, region, cidr, is_default, created_at) VALUES ('vpc-1', '111122223333', 'r', '10.0.0.0/16', 0, 'now');
             INSERT INTO security_groups (id, account_id, region, vpc_id, name, description, created_at) VALUES ('sg-1', '111122223333', 'r', 'vpc-1', 'g', 'd', 'now');
             INSERT INTO security_group_rules (id, group_id, is_egress, protocol) VALUES ('sgr-1', 'sg-1', 0, 'tcp');
             INSERT INTO tags VALUES ('sg-1', '111122223333', 'r', 'security-group', 'k', 'v');
             INSERT INTO tags VALUES ('sgr-1', '111122223333', 'r', 'security-group-rule', 'k', 'v');
             INSERT INTO tags VALUES ('vpc-1', '111122223333', 'r', 'vpc', 'k', 'v');",
        )?;
        Ok::<_, StoreError>(())
    })
    .expect("rows");
    s.write(|tx| Ok::<_, StoreError>(tx.execute("DELETE FROM security_groups WHERE id = ?1", params!["sg-1"])?))
        .expect("delete");
    let left: Vec<String> = s
        .read(|c| {
            c.prepare("SELECT resource_id FROM tags ORDER BY resource_id")?
                .query_map((), |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()
                .map_err(StoreError::from)
        })
        .expect("tags");
    assert_eq!(left, ["vpc-1"]);
}

#[test]
fn a_sqlite_cloud_copies_whole_into_postgres() {
    let Some(admin) = admin() else { return };
    let dir = std::env::temp_dir().join(format!("kiln-store-copy-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).expect("dir");
    let src = Store::open(&dir.join("kiln.db")).expect("sqlite");
    account(&src);
    src.write(|tx| {
        tx.execute_batch(
            "INSERT INTO vpcs (id, account_id, region, cidr, is_default, created_at) VALUES ('vpc-1', '111122223333', 'r', '10.0.0.0/16', 0, 'now');
             INSERT INTO security_groups (id, account_id, region, vpc_id, name, description, created_at) VALUES ('sg-1', '111122223333', 'r', 'vpc-1', 'g', 'd', 'now');
             INSERT INTO security_group_rules (id, group_id, is_egress, protocol) VALUES ('sgr-z', 'sg-1', 0, 'tcp');
             INSERT INTO security_group_rules (id, group_id, is_egress, protocol) VALUES ('sgr-a', 'sg-1', 0, 'udp');
             INSERT INTO snapshots (id, account_id, region, file, volume_size, state, progress, description, created_at)
               VALUES ('snap-2', '111122223333', 'r', 'f2', 1, 'completed', 100, '', 'now');
             INSERT INTO snapshots (id, account_id, region, parent_id, file, volume_size, state, progress, description, created_at)
               VALUES ('snap-1', '111122223333', 'r', 'snap-2', 'f1', 1, 'completed', 100, '', 'now');
             UPDATE snapshots SET parent_id = NULL WHERE id = 'snap-2';
             UPDATE snapshots SET parent_id = 'snap-1' WHERE id = 'snap-2';
             UPDATE snapshots SET parent_id = NULL WHERE id = 'snap-1';",
        )?;
        key_pairs::insert(tx, &scope(), &key("k"))?;
        Ok::<_, StoreError>(())
    })
    .expect("source rows");
    let dst = open(&database(&admin));
    let copied = kiln_store::transfer::copy_all(&src, &dst, &|_| {}).expect("copy");
    let rows = |t: &str| copied.iter().find(|c| c.table == t).map(|c| (c.source, c.target));
    assert_eq!(rows("security_group_rules"), Some((2, 2)));
    assert_eq!(rows("snapshots"), Some((2, 2)), "a child inserted before its parent in the source still copies");
    // The rules keep their order (rowid), and new ones come after them.
    let order = |s: &Store| -> Vec<String> {
        s.read(|c| {
            c.prepare("SELECT id FROM security_group_rules ORDER BY rowid")?
                .query_map((), |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()
                .map_err(StoreError::from)
        })
        .expect("rules")
    };
    assert_eq!(order(&dst), ["sgr-z", "sgr-a"]);
    dst.write(|tx| {
        let sql =
            "INSERT INTO security_group_rules (id, group_id, is_egress, protocol) VALUES ('sgr-0', 'sg-1', 1, '-1')";
        Ok::<_, StoreError>(tx.execute(sql, ())?)
    })
    .expect("new rule");
    assert_eq!(order(&dst), ["sgr-z", "sgr-a", "sgr-0"]);
    // A second copy into a database that holds a cloud is refused, and changes nothing.
    let again = kiln_store::transfer::copy_all(&src, &dst, &|_| {});
    assert!(matches!(again, Err(StoreError::Config(ref m)) if m.contains("already holds a cloud")), "{again:?}");
    assert_eq!(order(&dst).len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
