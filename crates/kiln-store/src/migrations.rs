//! Versioned schema migrations, applied in order inside one transaction each. On
//! SQLite the version lives in `user_version`; on PostgreSQL in `kiln_schema`, and
//! migrating holds an advisory lock so that servers starting together migrate once.
//!
//! PostgreSQL starts at version 15 from one script (`schema/postgres-15.sql`, the
//! schema SQLite reaches through migrations 1 to 15, in PostgreSQL's dialect); every
//! later migration is written for both, once where the SQL is the same.

use rusqlite::Connection;

use crate::StoreError;

/// Each entry moves the schema from version `i` to `i + 1`. Never edit a released one:
/// add another.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, credentials, key pairs, VPCs, subnets, security groups, tags.
    r#"
    CREATE TABLE accounts (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        is_provider INTEGER NOT NULL DEFAULT 0,
        created_at  TEXT NOT NULL
    );
    CREATE TABLE access_keys (
        access_key_id TEXT PRIMARY KEY,
        account_id    TEXT NOT NULL REFERENCES accounts(id),
        secret        TEXT NOT NULL,
        created_at    TEXT NOT NULL
    );
    CREATE TABLE key_pairs (
        id          TEXT PRIMARY KEY,
        account_id  TEXT NOT NULL REFERENCES accounts(id),
        region      TEXT NOT NULL,
        name        TEXT NOT NULL,
        key_type    TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        public_key  TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        UNIQUE (account_id, region, name)
    );
    CREATE TABLE vpcs (
        id         TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        region     TEXT NOT NULL,
        cidr       TEXT NOT NULL,
        is_default INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX one_default_vpc ON vpcs (account_id, region) WHERE is_default = 1;
    CREATE TABLE subnets (
        id                TEXT PRIMARY KEY,
        account_id        TEXT NOT NULL REFERENCES accounts(id),
        region            TEXT NOT NULL,
        vpc_id            TEXT NOT NULL REFERENCES vpcs(id),
        cidr              TEXT NOT NULL,
        availability_zone TEXT NOT NULL,
        zone_id           TEXT NOT NULL,
        default_for_az    INTEGER NOT NULL,
        map_public_ip     INTEGER NOT NULL,
        created_at        TEXT NOT NULL
    );
    CREATE INDEX subnets_by_vpc ON subnets (vpc_id);
    CREATE TABLE security_groups (
        id          TEXT PRIMARY KEY,
        account_id  TEXT NOT NULL REFERENCES accounts(id),
        region      TEXT NOT NULL,
        vpc_id      TEXT NOT NULL REFERENCES vpcs(id),
        name        TEXT NOT NULL,
        description TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        UNIQUE (vpc_id, name COLLATE NOCASE)
    );
    CREATE INDEX security_groups_by_scope ON security_groups (account_id, region);
    CREATE TABLE security_group_rules (
        id           TEXT PRIMARY KEY,
        group_id     TEXT NOT NULL REFERENCES security_groups(id) ON DELETE CASCADE,
        is_egress    INTEGER NOT NULL,
        protocol     TEXT NOT NULL,
        from_port    INTEGER,
        to_port      INTEGER,
        cidr_ipv4    TEXT,
        cidr_ipv6    TEXT,
        ref_group_id TEXT REFERENCES security_groups(id),
        ref_user_id  TEXT,
        description  TEXT
    );
    CREATE INDEX rules_by_group ON security_group_rules (group_id);
    CREATE INDEX rules_by_ref ON security_group_rules (ref_group_id);
    CREATE TABLE tags (
        resource_id   TEXT NOT NULL,
        account_id    TEXT NOT NULL,
        region        TEXT NOT NULL,
        resource_type TEXT NOT NULL,
        key           TEXT NOT NULL,
        value         TEXT NOT NULL,
        PRIMARY KEY (resource_id, key)
    );
    CREATE INDEX tags_by_scope ON tags (account_id, region);
    "#,
    // 2: snapshots (immutable qcow2 layers) and machine images.
    r#"
    CREATE TABLE snapshots (
        id          TEXT PRIMARY KEY,
        account_id  TEXT NOT NULL REFERENCES accounts(id),
        region      TEXT NOT NULL,
        parent_id   TEXT REFERENCES snapshots(id),
        file        TEXT NOT NULL,
        volume_size INTEGER NOT NULL,
        state       TEXT NOT NULL,
        progress    INTEGER NOT NULL,
        description TEXT NOT NULL,
        volume_id   TEXT,
        deleted     INTEGER NOT NULL DEFAULT 0,
        created_at  TEXT NOT NULL
    );
    CREATE INDEX snapshots_by_scope ON snapshots (account_id, region);
    CREATE INDEX snapshots_by_parent ON snapshots (parent_id);
    CREATE TABLE images (
        id                 TEXT PRIMARY KEY,
        account_id         TEXT NOT NULL REFERENCES accounts(id),
        region             TEXT NOT NULL,
        name               TEXT NOT NULL,
        description        TEXT NOT NULL,
        architecture       TEXT NOT NULL,
        root_device_name   TEXT NOT NULL,
        boot_mode          TEXT NOT NULL,
        kernel_file        TEXT,
        ramdisk_file       TEXT,
        kernel_cmdline     TEXT,
        default_user       TEXT,
        state              TEXT NOT NULL,
        state_reason       TEXT,
        is_public          INTEGER NOT NULL DEFAULT 0,
        product_codes      TEXT NOT NULL DEFAULT '',
        deprecation_time   TEXT,
        source_instance_id TEXT,
        recipe             TEXT,
        recipe_hash        TEXT,
        created_at         TEXT NOT NULL
    );
    CREATE UNIQUE INDEX image_names ON images (account_id, region, name);
    CREATE INDEX images_by_region ON images (region);
    CREATE TABLE image_block_devices (
        image_id              TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        device_name           TEXT NOT NULL,
        snapshot_id           TEXT REFERENCES snapshots(id),
        volume_size           INTEGER NOT NULL,
        volume_type           TEXT NOT NULL,
        delete_on_termination INTEGER NOT NULL,
        PRIMARY KEY (image_id, device_name)
    );
    CREATE INDEX bdm_by_snapshot ON image_block_devices (snapshot_id);
    CREATE TABLE launch_permissions (
        image_id   TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        account_id TEXT NOT NULL,
        PRIMARY KEY (image_id, account_id)
    );
    "#,
    // 3: instances and their volumes.
    r#"
    CREATE TABLE instances (
        id                      TEXT PRIMARY KEY,
        account_id              TEXT NOT NULL REFERENCES accounts(id),
        region                  TEXT NOT NULL,
        reservation_id          TEXT NOT NULL,
        image_id                TEXT NOT NULL,
        instance_type           TEXT NOT NULL,
        architecture            TEXT NOT NULL,
        vcpus                   INTEGER NOT NULL,
        memory_mib              INTEGER NOT NULL,
        state                   TEXT NOT NULL,
        transition_reason       TEXT NOT NULL DEFAULT '',
        state_reason_code       TEXT,
        state_reason_message    TEXT,
        key_name                TEXT,
        public_key              TEXT,
        subnet_id               TEXT NOT NULL,
        vpc_id                  TEXT NOT NULL,
        availability_zone       TEXT NOT NULL,
        private_ip              TEXT NOT NULL,
        user_data               BLOB,
        client_token            TEXT,
        launch_index            INTEGER NOT NULL,
        http_tokens             TEXT NOT NULL,
        http_endpoint           TEXT NOT NULL,
        hop_limit               INTEGER NOT NULL,
        disable_api_termination INTEGER NOT NULL,
        shutdown_behavior       TEXT NOT NULL,
        root_device_name        TEXT NOT NULL,
        kernel_file             TEXT,
        ramdisk_file            TEXT,
        kernel_cmdline          TEXT,
        launch_time             TEXT NOT NULL,
        ready_at                TEXT,
        terminated_at           TEXT,
        request_hash            TEXT
    );
    CREATE INDEX instances_by_scope ON instances (account_id, region);
    CREATE INDEX instances_by_token ON instances (account_id, region, client_token);
    CREATE TABLE instance_groups (
        instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
        group_id    TEXT NOT NULL,
        position    INTEGER NOT NULL,
        PRIMARY KEY (instance_id, group_id)
    );
    CREATE INDEX instance_groups_by_group ON instance_groups (group_id);
    CREATE TABLE volumes (
        id                    TEXT PRIMARY KEY,
        account_id            TEXT NOT NULL REFERENCES accounts(id),
        region                TEXT NOT NULL,
        availability_zone     TEXT NOT NULL,
        size_gib              INTEGER NOT NULL,
        volume_type           TEXT NOT NULL,
        snapshot_id           TEXT REFERENCES snapshots(id),
        file                  TEXT NOT NULL,
        state                 TEXT NOT NULL,
        instance_id           TEXT REFERENCES instances(id) ON DELETE SET NULL,
        device_name           TEXT,
        delete_on_termination INTEGER NOT NULL,
        created_at            TEXT NOT NULL
    );
    CREATE INDEX volumes_by_instance ON volumes (instance_id);
    CREATE INDEX volumes_by_snapshot ON volumes (snapshot_id);
    "#,
    // 4: disk image imports (ImportSnapshot, ImportImage).
    r#"
    CREATE TABLE import_tasks (
        id             TEXT PRIMARY KEY,
        account_id     TEXT NOT NULL REFERENCES accounts(id),
        region         TEXT NOT NULL,
        kind           TEXT NOT NULL,
        url            TEXT NOT NULL,
        format         TEXT NOT NULL,
        description    TEXT NOT NULL,
        architecture   TEXT,
        status         TEXT NOT NULL,
        status_message TEXT NOT NULL,
        progress       INTEGER NOT NULL,
        snapshot_id    TEXT,
        image_id       TEXT,
        disk_size      INTEGER,
        created_at     TEXT NOT NULL
    );
    CREATE INDEX import_tasks_by_scope ON import_tasks (account_id, region);
    "#,
    // 5: Marketplace vendors (their public images carry product codes).
    r#"
    ALTER TABLE accounts ADD COLUMN is_vendor INTEGER NOT NULL DEFAULT 0;
    "#,
    // 6: public IPv4 addresses (asked for at launch; held while the instance runs).
    r#"
    ALTER TABLE instances ADD COLUMN wants_public_ip INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE instances ADD COLUMN public_ip TEXT;
    CREATE UNIQUE INDEX instances_by_public_ip ON instances (public_ip) WHERE public_ip IS NOT NULL;
    "#,
    // 7: the durable core. Workflows (multi-step work recorded as intent in the
    // request's transaction; at most one running per instance, which makes the
    // reconciler the only actor on a VM), ClientTokens unique per account and region,
    // and tags that go with their resource, by trigger, wherever it is deleted.
    r#"
    CREATE TABLE workflows (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        instance_id TEXT,
        params      TEXT NOT NULL,
        step        TEXT NOT NULL,
        status      TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        error       TEXT,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE UNIQUE INDEX workflows_one_actor ON workflows (instance_id)
        WHERE status = 'running' AND instance_id IS NOT NULL;
    CREATE INDEX workflows_by_status ON workflows (status);
    CREATE TABLE client_tokens (
        account_id     TEXT NOT NULL,
        region         TEXT NOT NULL,
        token          TEXT NOT NULL,
        reservation_id TEXT NOT NULL,
        request_hash   TEXT NOT NULL,
        created_at     TEXT NOT NULL,
        PRIMARY KEY (account_id, region, token)
    );
    INSERT OR IGNORE INTO client_tokens
        SELECT account_id, region, client_token, reservation_id, COALESCE(request_hash, ''), launch_time
        FROM instances WHERE client_token IS NOT NULL;
    CREATE INDEX instances_by_reservation ON instances (reservation_id);
    CREATE TRIGGER key_pairs_tags_go AFTER DELETE ON key_pairs BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    CREATE TRIGGER vpcs_tags_go AFTER DELETE ON vpcs BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    CREATE TRIGGER subnets_tags_go AFTER DELETE ON subnets BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    CREATE TRIGGER security_groups_tags_go AFTER DELETE ON security_groups BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    CREATE TRIGGER security_group_rules_tags_go AFTER DELETE ON security_group_rules BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    CREATE TRIGGER images_tags_go AFTER DELETE ON images BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    CREATE TRIGGER instances_tags_go AFTER DELETE ON instances BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    CREATE TRIGGER volumes_tags_go AFTER DELETE ON volumes BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    CREATE TRIGGER snapshots_tags_go AFTER DELETE ON snapshots BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    CREATE TRIGGER snapshots_tags_hidden AFTER UPDATE OF deleted ON snapshots WHEN NEW.deleted = 1
        BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    DELETE FROM tags WHERE NOT EXISTS (SELECT 1 FROM key_pairs x WHERE x.id = tags.resource_id) AND NOT EXISTS (SELECT 1 FROM vpcs x WHERE x.id = tags.resource_id) AND NOT EXISTS (SELECT 1 FROM subnets x WHERE x.id = tags.resource_id) AND NOT EXISTS (SELECT 1 FROM security_groups x WHERE x.id = tags.resource_id) AND NOT EXISTS (SELECT 1 FROM security_group_rules x WHERE x.id = tags.resource_id) AND NOT EXISTS (SELECT 1 FROM images x WHERE x.id = tags.resource_id) AND NOT EXISTS (SELECT 1 FROM instances x WHERE x.id = tags.resource_id) AND NOT EXISTS (SELECT 1 FROM volumes x WHERE x.id = tags.resource_id) AND NOT EXISTS (SELECT 1 FROM snapshots x WHERE x.id = tags.resource_id AND x.deleted = 0);
    "#,
    // 8: VPC routing (internet gateways, route tables, routes, associations), Elastic
    // IPs, the VPC and subnet attributes, and the instance options EC2 shows back. Every VPC that exists gets its main route
    // table; every default VPC gets an attached gateway and a 0.0.0.0/0 route to it, as
    // EC2's default VPCs have.
    r#"
    ALTER TABLE instances ADD COLUMN disable_api_stop INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE instances ADD COLUMN ebs_optimized INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE instances ADD COLUMN monitoring INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE instances ADD COLUMN source_dest_check INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE instances ADD COLUMN cpu_credits TEXT;
    UPDATE instances SET cpu_credits = 'standard' WHERE instance_type LIKE 't2.%';
    UPDATE instances SET cpu_credits = 'unlimited'
        WHERE instance_type LIKE 't3.%' OR instance_type LIKE 't3a.%' OR instance_type LIKE 't4g.%';
    ALTER TABLE vpcs ADD COLUMN dns_support INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE vpcs ADD COLUMN dhcp_options_id TEXT;
    CREATE TABLE dhcp_options (
        id         TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        region     TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE dhcp_option_values (
        dhcp_options_id TEXT NOT NULL REFERENCES dhcp_options(id) ON DELETE CASCADE,
        key             TEXT NOT NULL,
        position        INTEGER NOT NULL,
        value           TEXT NOT NULL,
        PRIMARY KEY (dhcp_options_id, key, position)
    );
    CREATE TRIGGER dhcp_options_tags_go AFTER DELETE ON dhcp_options BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    ALTER TABLE vpcs ADD COLUMN dns_hostnames INTEGER NOT NULL DEFAULT 0;
    UPDATE vpcs SET dns_hostnames = 1 WHERE is_default = 1;
    CREATE TABLE internet_gateways (
        id         TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        region     TEXT NOT NULL,
        vpc_id     TEXT REFERENCES vpcs(id),
        created_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX one_gateway_per_vpc ON internet_gateways (vpc_id) WHERE vpc_id IS NOT NULL;
    CREATE TABLE route_tables (
        id               TEXT PRIMARY KEY,
        account_id       TEXT NOT NULL REFERENCES accounts(id),
        region           TEXT NOT NULL,
        vpc_id           TEXT NOT NULL REFERENCES vpcs(id),
        main_association TEXT UNIQUE,
        created_at       TEXT NOT NULL
    );
    CREATE UNIQUE INDEX one_main_table ON route_tables (vpc_id) WHERE main_association IS NOT NULL;
    CREATE INDEX route_tables_by_scope ON route_tables (account_id, region);
    CREATE TABLE routes (
        route_table_id TEXT NOT NULL REFERENCES route_tables(id),
        destination    TEXT NOT NULL,
        target         TEXT NOT NULL,
        PRIMARY KEY (route_table_id, destination)
    );
    CREATE TABLE route_table_associations (
        id             TEXT PRIMARY KEY,
        route_table_id TEXT NOT NULL REFERENCES route_tables(id),
        subnet_id      TEXT NOT NULL UNIQUE REFERENCES subnets(id)
    );
    CREATE TABLE addresses (
        allocation_id  TEXT PRIMARY KEY,
        account_id     TEXT NOT NULL REFERENCES accounts(id),
        region         TEXT NOT NULL,
        public_ip      TEXT NOT NULL UNIQUE,
        instance_id    TEXT UNIQUE REFERENCES instances(id),
        association_id TEXT UNIQUE,
        created_at     TEXT NOT NULL
    );
    CREATE TRIGGER internet_gateways_tags_go AFTER DELETE ON internet_gateways BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    CREATE TRIGGER route_tables_tags_go AFTER DELETE ON route_tables BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    CREATE TRIGGER addresses_tags_go AFTER DELETE ON addresses BEGIN DELETE FROM tags WHERE resource_id = OLD.allocation_id; END;
    CREATE TRIGGER addresses_leave_terminated AFTER UPDATE OF state ON instances WHEN NEW.state = 'terminated'
        BEGIN UPDATE addresses SET instance_id = NULL, association_id = NULL WHERE instance_id = NEW.id; END;
    CREATE TRIGGER addresses_leave_deleted BEFORE DELETE ON instances
        BEGIN UPDATE addresses SET instance_id = NULL, association_id = NULL WHERE instance_id = OLD.id; END;
    CREATE TABLE network_acls (
        id         TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id),
        region     TEXT NOT NULL,
        vpc_id     TEXT NOT NULL REFERENCES vpcs(id),
        is_default INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX one_default_acl ON network_acls (vpc_id) WHERE is_default = 1;
    CREATE INDEX network_acls_by_scope ON network_acls (account_id, region);
    CREATE TABLE network_acl_entries (
        acl_id      TEXT NOT NULL REFERENCES network_acls(id) ON DELETE CASCADE,
        egress      INTEGER NOT NULL,
        rule_number INTEGER NOT NULL,
        protocol    TEXT NOT NULL,
        allow       INTEGER NOT NULL,
        cidr        TEXT NOT NULL,
        from_port   INTEGER,
        to_port     INTEGER,
        PRIMARY KEY (acl_id, egress, rule_number)
    );
    CREATE TABLE network_acl_associations (
        id        TEXT PRIMARY KEY,
        acl_id    TEXT NOT NULL REFERENCES network_acls(id),
        subnet_id TEXT NOT NULL UNIQUE REFERENCES subnets(id) ON DELETE CASCADE
    );
    CREATE TRIGGER network_acls_tags_go AFTER DELETE ON network_acls BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    INSERT INTO network_acls (id, account_id, region, vpc_id, is_default, created_at)
        SELECT 'acl-' || substr(lower(hex(randomblob(9))), 1, 17), account_id, region, id, 1, created_at FROM vpcs;
    INSERT INTO network_acl_entries (acl_id, egress, rule_number, protocol, allow, cidr)
        SELECT id, 0, 100, '-1', 1, '0.0.0.0/0' FROM network_acls;
    INSERT INTO network_acl_entries (acl_id, egress, rule_number, protocol, allow, cidr)
        SELECT id, 1, 100, '-1', 1, '0.0.0.0/0' FROM network_acls;
    INSERT INTO network_acl_associations (id, acl_id, subnet_id)
        SELECT 'aclassoc-' || substr(lower(hex(randomblob(9))), 1, 17), a.id, s.id
        FROM subnets s JOIN network_acls a ON a.vpc_id = s.vpc_id;
    INSERT INTO route_tables (id, account_id, region, vpc_id, main_association, created_at)
        SELECT 'rtb-' || substr(lower(hex(randomblob(9))), 1, 17), account_id, region, id,
               'rtbassoc-' || substr(lower(hex(randomblob(9))), 1, 17), created_at
        FROM vpcs;
    INSERT INTO internet_gateways (id, account_id, region, vpc_id, created_at)
        SELECT 'igw-' || substr(lower(hex(randomblob(9))), 1, 17), account_id, region, id, created_at
        FROM vpcs WHERE is_default = 1;
    INSERT INTO routes (route_table_id, destination, target)
        SELECT t.id, '0.0.0.0/0', g.id FROM route_tables t JOIN internet_gateways g ON g.vpc_id = t.vpc_id;
    "#,
    // 9: network interfaces made on their own (CreateNetworkInterface): a primary
    // interface is its instance's and is not stored. Attachments live on the row;
    // terminating the instance deletes those marked DeleteOnTermination and detaches
    // the others.
    r#"
    CREATE TABLE network_interfaces (
        id                    TEXT PRIMARY KEY,
        account_id            TEXT NOT NULL REFERENCES accounts(id),
        region                TEXT NOT NULL,
        vpc_id                TEXT NOT NULL REFERENCES vpcs(id),
        subnet_id             TEXT NOT NULL REFERENCES subnets(id),
        availability_zone     TEXT NOT NULL,
        private_ip            TEXT NOT NULL,
        description           TEXT NOT NULL DEFAULT '',
        source_dest_check     INTEGER NOT NULL DEFAULT 1,
        instance_id           TEXT REFERENCES instances(id),
        device_index          INTEGER,
        attachment_id         TEXT UNIQUE,
        attachment_status     TEXT,
        attach_time           TEXT,
        delete_on_termination INTEGER NOT NULL DEFAULT 0,
        created_at            TEXT NOT NULL,
        UNIQUE (subnet_id, private_ip)
    );
    CREATE UNIQUE INDEX one_interface_per_device ON network_interfaces (instance_id, device_index)
        WHERE instance_id IS NOT NULL;
    CREATE INDEX network_interfaces_by_scope ON network_interfaces (account_id, region);
    CREATE TABLE network_interface_groups (
        interface_id TEXT NOT NULL REFERENCES network_interfaces(id) ON DELETE CASCADE,
        group_id     TEXT NOT NULL,
        PRIMARY KEY (interface_id, group_id)
    );
    CREATE TRIGGER network_interfaces_tags_go AFTER DELETE ON network_interfaces
        BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    CREATE TRIGGER interfaces_leave_terminated AFTER UPDATE OF state ON instances WHEN NEW.state = 'terminated'
        BEGIN
            DELETE FROM network_interfaces WHERE instance_id = NEW.id AND delete_on_termination = 1;
            UPDATE network_interfaces SET instance_id = NULL, device_index = NULL, attachment_id = NULL,
                attachment_status = NULL, attach_time = NULL, delete_on_termination = 0
                WHERE instance_id = NEW.id;
        END;
    CREATE TRIGGER interfaces_leave_deleted BEFORE DELETE ON instances
        BEGIN
            UPDATE network_interfaces SET instance_id = NULL, device_index = NULL, attachment_id = NULL,
                attachment_status = NULL, attach_time = NULL, delete_on_termination = 0
                WHERE instance_id = OLD.id;
        END;
    "#,
    // 10: the volume API: a volume's performance and encryption as created, its
    // attachment's state, its modifications, and the account's EBS encryption default.
    r#"
    ALTER TABLE volumes ADD COLUMN iops INTEGER;
    ALTER TABLE volumes ADD COLUMN throughput INTEGER;
    ALTER TABLE volumes ADD COLUMN encrypted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE volumes ADD COLUMN kms_key_id TEXT;
    ALTER TABLE volumes ADD COLUMN multi_attach INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE volumes ADD COLUMN auto_enable_io INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE volumes ADD COLUMN attach_state TEXT;
    ALTER TABLE volumes ADD COLUMN attach_time TEXT;
    ALTER TABLE volumes ADD COLUMN client_token TEXT;
    UPDATE volumes SET attach_state = 'attached', attach_time = created_at WHERE instance_id IS NOT NULL;
    UPDATE volumes SET iops = 3000, throughput = 125 WHERE volume_type = 'gp3';
    CREATE UNIQUE INDEX volume_client_tokens ON volumes (account_id, region, client_token)
        WHERE client_token IS NOT NULL;
    CREATE UNIQUE INDEX one_volume_per_device ON volumes (instance_id, device_name) WHERE instance_id IS NOT NULL;
    CREATE TABLE volume_modifications (
        volume_id           TEXT PRIMARY KEY REFERENCES volumes(id) ON DELETE CASCADE,
        state               TEXT NOT NULL,
        original_size       INTEGER NOT NULL,
        target_size         INTEGER NOT NULL,
        original_type       TEXT NOT NULL,
        target_type         TEXT NOT NULL,
        original_iops       INTEGER,
        target_iops         INTEGER,
        original_throughput INTEGER,
        target_throughput   INTEGER,
        start_time          TEXT NOT NULL,
        end_time            TEXT
    );
    CREATE TABLE ebs_defaults (
        account_id TEXT NOT NULL REFERENCES accounts(id),
        region     TEXT NOT NULL,
        encrypted  INTEGER NOT NULL,
        kms_key_id TEXT,
        PRIMARY KEY (account_id, region)
    );
    "#,
    // 11: snapshot sharing (createVolumePermission): an account id, or `all`.
    r#"
    CREATE TABLE snapshot_permissions (
        snapshot_id TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
        grantee     TEXT NOT NULL,
        PRIMARY KEY (snapshot_id, grantee)
    );
    CREATE INDEX snapshot_permissions_by_grantee ON snapshot_permissions (grantee);
    "#,
    // 12: launch templates and their numbered versions. A version's data is the
    // request's LaunchTemplateData as flat query parameters (JSON), as given.
    r#"
    CREATE TABLE launch_templates (
        id           TEXT PRIMARY KEY,
        account_id   TEXT NOT NULL REFERENCES accounts(id),
        region       TEXT NOT NULL,
        name         TEXT NOT NULL,
        default_version INTEGER NOT NULL,
        -- The last number given to a version: deleted numbers are never reused.
        last_number  INTEGER NOT NULL,
        client_token TEXT,
        created_at   TEXT NOT NULL,
        UNIQUE (account_id, region, name)
    );
    CREATE UNIQUE INDEX launch_templates_by_token ON launch_templates (account_id, region, client_token)
        WHERE client_token IS NOT NULL;
    CREATE TABLE launch_template_versions (
        template_id  TEXT NOT NULL REFERENCES launch_templates(id) ON DELETE CASCADE,
        version      INTEGER NOT NULL,
        description  TEXT,
        data         TEXT NOT NULL,
        client_token TEXT,
        created_at   TEXT NOT NULL,
        PRIMARY KEY (template_id, version)
    );
    CREATE UNIQUE INDEX launch_template_versions_by_token ON launch_template_versions (template_id, client_token)
        WHERE client_token IS NOT NULL;
    CREATE TRIGGER launch_templates_tags_go AFTER DELETE ON launch_templates
        BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    "#,
    // 13: a forced detach from a running VM pulls the disk rather than waiting for
    // the guest to release it.
    r#"
    ALTER TABLE volumes ADD COLUMN force_detach INTEGER NOT NULL DEFAULT 0;
    "#,
    // 14: the snapshot a volume was made from, kept apart from the layer its file is
    // on now (which moves on with every snapshot of it). Volumes snapshotted before
    // this keep their current layer as their source: the first is not recorded.
    r#"
    ALTER TABLE volumes ADD COLUMN source_snapshot_id TEXT;
    UPDATE volumes SET source_snapshot_id = snapshot_id;
    "#,
    // 15: the console: an account's password (an argon2 PHC string, never the
    // password) and the temporary credentials of its sessions.
    r#"
    ALTER TABLE accounts ADD COLUMN console_password TEXT;
    CREATE TABLE console_sessions (
        access_key_id TEXT PRIMARY KEY,
        account_id    TEXT NOT NULL REFERENCES accounts(id),
        secret        TEXT NOT NULL,
        token_hash    TEXT NOT NULL,
        expires_at    TEXT NOT NULL,
        created_at    TEXT NOT NULL
    );
    "#,
];

/// The schema SQLite reaches at `POSTGRES_BASE`, made at once on PostgreSQL.
const POSTGRES_BASE_SQL: &str = include_str!("schema/postgres-15.sql");
const POSTGRES_BASE: i64 = 15;
const _: () = assert!(MIGRATIONS.len() as i64 == POSTGRES_BASE, "add new migrations to LATER, in both dialects");

/// Migrations after `POSTGRES_BASE`: (SQLite's, PostgreSQL's where it differs).
const LATER: &[(&str, Option<&str>)] = &[
    // 16: leases: background work (a host's reconciler, imports, image builds and guest
    // services) is done by the one server holding its lease, until it lapses. Times are
    // Unix milliseconds.
    (
        r#"
    CREATE TABLE leases (
        name        TEXT PRIMARY KEY,
        holder      TEXT NOT NULL,
        acquired_at INTEGER NOT NULL,
        renewed_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    );
    "#,
        Some(
            r#"
    CREATE TABLE leases (
        name        TEXT COLLATE "C" PRIMARY KEY,
        holder      TEXT COLLATE "C" NOT NULL,
        acquired_at BIGINT NOT NULL,
        renewed_at  BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL
    );
    "#,
        ),
    ),
    // 17: hosts joined with `kiln agent`, their one-time join tokens (kept as hashes) and
    // the certificate authority that issues the hosts' client certificates. Times are
    // Unix milliseconds. The CA's key is a secret kept here, beside the accounts'.
    (
        r#"
    CREATE TABLE host_ca (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        cert_pem   TEXT NOT NULL,
        key_pem    TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE host_join_tokens (
        token_sha256 TEXT PRIMARY KEY,
        zone         TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        used_by      TEXT
    );
    CREATE TABLE hosts (
        host_id          TEXT PRIMARY KEY,
        zone             TEXT NOT NULL,
        hostname         TEXT NOT NULL,
        state            TEXT NOT NULL,
        architectures    TEXT NOT NULL,
        accel            TEXT NOT NULL,
        cpus             INTEGER NOT NULL,
        memory_mib       INTEGER NOT NULL,
        qemu_version     TEXT NOT NULL,
        cert_sha256      TEXT NOT NULL UNIQUE,
        prev_cert_sha256 TEXT,
        cert_expires_at  INTEGER NOT NULL,
        joined_at        INTEGER NOT NULL,
        heartbeat_at     INTEGER NOT NULL
    );
    "#,
        Some(
            r#"
    CREATE TABLE host_ca (
        id         BIGINT PRIMARY KEY CHECK (id = 1),
        cert_pem   TEXT COLLATE "C" NOT NULL,
        key_pem    TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE host_join_tokens (
        token_sha256 TEXT COLLATE "C" PRIMARY KEY,
        zone         TEXT COLLATE "C" NOT NULL,
        created_at   BIGINT NOT NULL,
        expires_at   BIGINT NOT NULL,
        used_by      TEXT COLLATE "C"
    );
    CREATE TABLE hosts (
        host_id          TEXT COLLATE "C" PRIMARY KEY,
        zone             TEXT COLLATE "C" NOT NULL,
        hostname         TEXT COLLATE "C" NOT NULL,
        state            TEXT COLLATE "C" NOT NULL,
        architectures    TEXT COLLATE "C" NOT NULL,
        accel            TEXT COLLATE "C" NOT NULL,
        cpus             BIGINT NOT NULL,
        memory_mib       BIGINT NOT NULL,
        qemu_version     TEXT COLLATE "C" NOT NULL,
        cert_sha256      TEXT COLLATE "C" NOT NULL UNIQUE,
        prev_cert_sha256 TEXT COLLATE "C",
        cert_expires_at  BIGINT NOT NULL,
        joined_at        BIGINT NOT NULL,
        heartbeat_at     BIGINT NOT NULL
    );
    "#,
        ),
    ),
    // 18: placement groups, and which instances were launched into one (a table of its
    // own, so an instance row stays as it was).
    (
        r#"
    CREATE TABLE placement_groups (
        id              TEXT PRIMARY KEY,
        account_id      TEXT NOT NULL REFERENCES accounts(id),
        region          TEXT NOT NULL,
        name            TEXT NOT NULL,
        strategy        TEXT NOT NULL,
        partition_count INTEGER,
        spread_level    TEXT,
        created_at      TEXT NOT NULL,
        UNIQUE (account_id, region, name)
    );
    CREATE TABLE placement_group_members (
        instance_id      TEXT PRIMARY KEY REFERENCES instances(id) ON DELETE CASCADE,
        group_id         TEXT NOT NULL REFERENCES placement_groups(id),
        partition_number INTEGER
    );
    CREATE INDEX placement_group_members_by_group ON placement_group_members (group_id);
    CREATE TRIGGER placement_groups_tags_go AFTER DELETE ON placement_groups
        BEGIN DELETE FROM tags WHERE resource_id = OLD.id; END;
    "#,
        Some(
            r#"
    CREATE TABLE placement_groups (
        id              TEXT COLLATE "C" PRIMARY KEY,
        account_id      TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region          TEXT COLLATE "C" NOT NULL,
        name            TEXT COLLATE "C" NOT NULL,
        strategy        TEXT COLLATE "C" NOT NULL,
        partition_count BIGINT,
        spread_level    TEXT COLLATE "C",
        created_at      TEXT COLLATE "C" NOT NULL,
        UNIQUE (account_id, region, name)
    );
    CREATE TABLE placement_group_members (
        instance_id      TEXT COLLATE "C" PRIMARY KEY REFERENCES instances(id) ON DELETE CASCADE,
        group_id         TEXT COLLATE "C" NOT NULL REFERENCES placement_groups(id),
        partition_number BIGINT
    );
    CREATE INDEX placement_group_members_by_group ON placement_group_members (group_id);
    CREATE FUNCTION placement_groups_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            DELETE FROM tags WHERE resource_id = OLD.id;
            RETURN NULL;
        END $fn$;
    CREATE TRIGGER placement_groups_tags_go AFTER DELETE ON placement_groups
        FOR EACH ROW EXECUTE FUNCTION placement_groups_tags_go();
    "#,
        ),
    ),
    // 19: what each joined host has in use, as its agent measures at every heartbeat.
    (
        r#"
    ALTER TABLE hosts ADD COLUMN vms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE hosts ADD COLUMN vm_resident_mib INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE hosts ADD COLUMN memory_available_mib INTEGER NOT NULL DEFAULT 0;
    "#,
        Some(
            r#"
    ALTER TABLE hosts ADD COLUMN vms BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE hosts ADD COLUMN vm_resident_mib BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE hosts ADD COLUMN memory_available_mib BIGINT NOT NULL DEFAULT 0;
    "#,
        ),
    ),
    // 20: an image's own TCG translation-cache size (MiB, from its recipe; NULL takes the
    // host's), and the copy each instance launched from it keeps.
    (
        r#"
    ALTER TABLE images ADD COLUMN tcg_tb_size_mib INTEGER;
    ALTER TABLE instances ADD COLUMN tcg_tb_size_mib INTEGER;
    "#,
        Some(
            r#"
    ALTER TABLE images ADD COLUMN tcg_tb_size_mib BIGINT;
    ALTER TABLE instances ADD COLUMN tcg_tb_size_mib BIGINT;
    "#,
        ),
    ),
    // 21: where a joined host's agent serves the control plane's calls (`ip:port`, as
    // its agent reports; NULL while it serves none).
    (
        r#"
    ALTER TABLE hosts ADD COLUMN endpoint TEXT;
    "#,
        None,
    ),
    // 22: the joined host an instance is placed on (NULL: the serving host's own agent,
    // as every instance was before hosts could be joined).
    (
        r#"
    ALTER TABLE instances ADD COLUMN host_id TEXT;
    CREATE INDEX instances_host ON instances (host_id) WHERE host_id IS NOT NULL;
    "#,
        None,
    ),
    // 23: each VPC's VXLAN network identifier between hosts, from a counter that never
    // goes back, so a deleted VPC's VNI is never another's (a host that was away may
    // still carry it).
    (
        r#"
    CREATE TABLE vni_counter (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        last INTEGER NOT NULL
    );
    ALTER TABLE vpcs ADD COLUMN vni INTEGER;
    UPDATE vpcs SET vni = (SELECT COUNT(*) FROM vpcs v WHERE v.id <= vpcs.id);
    INSERT INTO vni_counter (id, last) VALUES (1, (SELECT COUNT(*) FROM vpcs));
    CREATE UNIQUE INDEX vpcs_vni ON vpcs (vni);
    "#,
        Some(
            r#"
    CREATE TABLE vni_counter (
        id   BIGINT PRIMARY KEY CHECK (id = 1),
        last BIGINT NOT NULL
    );
    ALTER TABLE vpcs ADD COLUMN vni BIGINT;
    UPDATE vpcs SET vni = (SELECT COUNT(*) FROM vpcs v WHERE v.id <= vpcs.id);
    INSERT INTO vni_counter (id, last) VALUES (1, (SELECT COUNT(*) FROM vpcs));
    CREATE UNIQUE INDEX vpcs_vni ON vpcs (vni);
    "#,
        ),
    ),
];

/// The newest schema version this kiln knows.
pub fn known_version() -> i64 {
    MIGRATIONS.len() as i64 + LATER.len() as i64
}

/// The schema version of a PostgreSQL database (0 when Kiln has not made it yet).
pub(crate) fn postgres_version(client: &mut postgres::Client) -> Result<i64, StoreError> {
    let exists: bool = client.query_one("SELECT to_regclass('kiln_schema') IS NOT NULL", &[])?.get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client.query_one("SELECT version FROM kiln_schema", &[])?.get(0))
}

/// Brings a PostgreSQL database up to date, under the migration lock.
pub(crate) fn migrate_postgres(client: &mut postgres::Client) -> Result<(), StoreError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&crate::postgres_pool::MIGRATE_LOCK])?;
    let out = migrate_postgres_locked(client);
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&crate::postgres_pool::MIGRATE_LOCK]);
    out?;
    unlocked?;
    Ok(())
}

fn migrate_postgres_locked(client: &mut postgres::Client) -> Result<(), StoreError> {
    let known = known_version();
    let found = postgres_version(client)?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    if found == 0 {
        let mut tx = client.transaction()?;
        tx.batch_execute(POSTGRES_BASE_SQL)?;
        tx.batch_execute("CREATE TABLE kiln_schema (version BIGINT NOT NULL)")?;
        tx.execute("INSERT INTO kiln_schema VALUES ($1)", &[&POSTGRES_BASE])?;
        tx.commit()?;
    }
    let found = postgres_version(client)?;
    for (i, (sqlite, pg)) in LATER.iter().enumerate() {
        let version = POSTGRES_BASE + 1 + i as i64;
        if version <= found {
            continue;
        }
        let mut tx = client.transaction()?;
        tx.batch_execute(pg.unwrap_or(sqlite))?;
        tx.execute("UPDATE kiln_schema SET version = $1", &[&version])?;
        tx.commit()?;
    }
    Ok(())
}

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = known_version();
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    let all = MIGRATIONS.iter().copied().chain(LATER.iter().map(|(sqlite, _)| *sqlite));
    for (i, sql) in all.enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn migrations_apply_once_and_reopen_cleanly() {
        let dir = std::env::temp_dir().join(format!("kiln-store-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("kiln.db");
        let s = Store::open(&path).expect("open");
        assert_eq!(s.schema_version().expect("v"), super::known_version());
        drop(s);
        let s = Store::open(&path).expect("reopen");
        assert_eq!(s.schema_version().expect("v"), super::known_version());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tags_go_with_their_resource_wherever_it_is_deleted() {
        let s = Store::in_memory().expect("store");
        let count = |s: &Store, id: &str| -> i64 {
            s.read(|c| {
                Ok::<_, crate::StoreError>(c.query_row(
                    "SELECT count(*) FROM tags WHERE resource_id = ?1",
                    [id],
                    |r| r.get(0),
                )?)
            })
            .expect("count")
        };
        s.write(|tx| {
            tx.execute_batch(
                "INSERT INTO accounts (id, name, created_at) VALUES ('111122223333', 'a', 'now');
                 INSERT INTO vpcs (id, account_id, region, cidr, is_default, created_at) VALUES ('vpc-1', '111122223333', 'r', '10.0.0.0/16', 0, 'now');
                 INSERT INTO security_groups VALUES ('sg-1', '111122223333', 'r', 'vpc-1', 'g', 'd', 'now');
                 INSERT INTO security_group_rules (id, group_id, is_egress, protocol) VALUES ('sgr-1', 'sg-1', 0, 'tcp');
                 INSERT INTO snapshots (id, account_id, region, file, volume_size, state, progress, description, created_at)
                   VALUES ('snap-1', '111122223333', 'r', 'f', 1, 'completed', 100, '', 'now');
                 INSERT INTO tags VALUES ('sg-1', '111122223333', 'r', 'security-group', 'k', 'v');
                 INSERT INTO tags VALUES ('sgr-1', '111122223333', 'r', 'security-group-rule', 'k', 'v');
                 INSERT INTO tags VALUES ('snap-1', '111122223333', 'r', 'snapshot', 'k', 'v');
                 INSERT INTO tags VALUES ('vpc-1', '111122223333', 'r', 'vpc', 'k', 'v');",
            )?;
            Ok::<_, crate::StoreError>(())
        })
        .expect("rows");
        // A rule deleted by cascade takes its tags too.
        s.write(|tx| Ok::<_, crate::StoreError>(tx.execute("DELETE FROM security_groups WHERE id = 'sg-1'", ())?))
            .expect("delete group");
        assert_eq!((count(&s, "sg-1"), count(&s, "sgr-1")), (0, 0));
        // A snapshot's tags go when it is hidden, not only when its row goes.
        s.write(|tx| crate::snapshots::mark_deleted(tx, "snap-1")).expect("hide");
        assert_eq!(count(&s, "snap-1"), 0);
        assert_eq!(count(&s, "vpc-1"), 1);
    }
}
