-- Kiln's schema at version 15 in PostgreSQL's dialect: what SQLite reaches through
-- migrations 1 to 15, made at once. Text compares bytewise (COLLATE "C"), as in SQLite;
-- booleans are integers 0/1 and triggers are functions, as PostgreSQL needs.
CREATE TABLE kiln_generation (n BIGINT NOT NULL);
INSERT INTO kiln_generation VALUES (0);
CREATE TABLE accounts (
        id          TEXT COLLATE "C" PRIMARY KEY,
        name        TEXT COLLATE "C" NOT NULL UNIQUE,
        is_provider BIGINT NOT NULL DEFAULT 0,
        created_at  TEXT COLLATE "C" NOT NULL
    , is_vendor BIGINT NOT NULL DEFAULT 0, console_password TEXT COLLATE "C");
CREATE TABLE access_keys (
        access_key_id TEXT COLLATE "C" PRIMARY KEY,
        account_id    TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        secret        TEXT COLLATE "C" NOT NULL,
        created_at    TEXT COLLATE "C" NOT NULL
    );
CREATE TABLE key_pairs (
        id          TEXT COLLATE "C" PRIMARY KEY,
        account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region      TEXT COLLATE "C" NOT NULL,
        name        TEXT COLLATE "C" NOT NULL,
        key_type    TEXT COLLATE "C" NOT NULL,
        fingerprint TEXT COLLATE "C" NOT NULL,
        public_key  TEXT COLLATE "C" NOT NULL,
        created_at  TEXT COLLATE "C" NOT NULL,
        UNIQUE (account_id, region, name)
    );
CREATE TABLE vpcs (
        id         TEXT COLLATE "C" PRIMARY KEY,
        account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region     TEXT COLLATE "C" NOT NULL,
        cidr       TEXT COLLATE "C" NOT NULL,
        is_default BIGINT NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL
    , dns_support BIGINT NOT NULL DEFAULT 1, dhcp_options_id TEXT COLLATE "C", dns_hostnames BIGINT NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX one_default_vpc ON vpcs (account_id, region) WHERE is_default = 1;
CREATE TABLE subnets (
        id                TEXT COLLATE "C" PRIMARY KEY,
        account_id        TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region            TEXT COLLATE "C" NOT NULL,
        vpc_id            TEXT COLLATE "C" NOT NULL REFERENCES vpcs(id),
        cidr              TEXT COLLATE "C" NOT NULL,
        availability_zone TEXT COLLATE "C" NOT NULL,
        zone_id           TEXT COLLATE "C" NOT NULL,
        default_for_az    BIGINT NOT NULL,
        map_public_ip     BIGINT NOT NULL,
        created_at        TEXT COLLATE "C" NOT NULL
    );
CREATE INDEX subnets_by_vpc ON subnets (vpc_id);
CREATE TABLE security_groups (
        id          TEXT COLLATE "C" PRIMARY KEY,
        account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region      TEXT COLLATE "C" NOT NULL,
        vpc_id      TEXT COLLATE "C" NOT NULL REFERENCES vpcs(id),
        name        TEXT COLLATE "C" NOT NULL,
        description TEXT COLLATE "C" NOT NULL,
        created_at  TEXT COLLATE "C" NOT NULL
    );
CREATE UNIQUE INDEX security_group_names ON security_groups (vpc_id, lower(name));
CREATE INDEX security_groups_by_scope ON security_groups (account_id, region);
CREATE TABLE security_group_rules (
        rowid        BIGSERIAL NOT NULL,
        id           TEXT COLLATE "C" PRIMARY KEY,
        group_id     TEXT COLLATE "C" NOT NULL REFERENCES security_groups(id) ON DELETE CASCADE,
        is_egress    BIGINT NOT NULL,
        protocol     TEXT COLLATE "C" NOT NULL,
        from_port    BIGINT,
        to_port      BIGINT,
        cidr_ipv4    TEXT COLLATE "C",
        cidr_ipv6    TEXT COLLATE "C",
        ref_group_id TEXT COLLATE "C" REFERENCES security_groups(id),
        ref_user_id  TEXT COLLATE "C",
        description  TEXT COLLATE "C"
    );
CREATE INDEX rules_by_group ON security_group_rules (group_id);
CREATE INDEX rules_by_ref ON security_group_rules (ref_group_id);
CREATE TABLE tags (
        resource_id   TEXT COLLATE "C" NOT NULL,
        account_id    TEXT COLLATE "C" NOT NULL,
        region        TEXT COLLATE "C" NOT NULL,
        resource_type TEXT COLLATE "C" NOT NULL,
        key           TEXT COLLATE "C" NOT NULL,
        value         TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (resource_id, key)
    );
CREATE INDEX tags_by_scope ON tags (account_id, region);
CREATE TABLE snapshots (
        id          TEXT COLLATE "C" PRIMARY KEY,
        account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region      TEXT COLLATE "C" NOT NULL,
        parent_id   TEXT COLLATE "C" REFERENCES snapshots(id),
        file        TEXT COLLATE "C" NOT NULL,
        volume_size BIGINT NOT NULL,
        state       TEXT COLLATE "C" NOT NULL,
        progress    BIGINT NOT NULL,
        description TEXT COLLATE "C" NOT NULL,
        volume_id   TEXT COLLATE "C",
        deleted     BIGINT NOT NULL DEFAULT 0,
        created_at  TEXT COLLATE "C" NOT NULL
    );
CREATE INDEX snapshots_by_scope ON snapshots (account_id, region);
CREATE INDEX snapshots_by_parent ON snapshots (parent_id);
CREATE TABLE images (
        id                 TEXT COLLATE "C" PRIMARY KEY,
        account_id         TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region             TEXT COLLATE "C" NOT NULL,
        name               TEXT COLLATE "C" NOT NULL,
        description        TEXT COLLATE "C" NOT NULL,
        architecture       TEXT COLLATE "C" NOT NULL,
        root_device_name   TEXT COLLATE "C" NOT NULL,
        boot_mode          TEXT COLLATE "C" NOT NULL,
        kernel_file        TEXT COLLATE "C",
        ramdisk_file       TEXT COLLATE "C",
        kernel_cmdline     TEXT COLLATE "C",
        default_user       TEXT COLLATE "C",
        state              TEXT COLLATE "C" NOT NULL,
        state_reason       TEXT COLLATE "C",
        is_public          BIGINT NOT NULL DEFAULT 0,
        product_codes      TEXT COLLATE "C" NOT NULL DEFAULT '',
        deprecation_time   TEXT COLLATE "C",
        source_instance_id TEXT COLLATE "C",
        recipe             TEXT COLLATE "C",
        recipe_hash        TEXT COLLATE "C",
        created_at         TEXT COLLATE "C" NOT NULL
    );
CREATE UNIQUE INDEX image_names ON images (account_id, region, name);
CREATE INDEX images_by_region ON images (region);
CREATE TABLE image_block_devices (
        image_id              TEXT COLLATE "C" NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        device_name           TEXT COLLATE "C" NOT NULL,
        snapshot_id           TEXT COLLATE "C" REFERENCES snapshots(id),
        volume_size           BIGINT NOT NULL,
        volume_type           TEXT COLLATE "C" NOT NULL,
        delete_on_termination BIGINT NOT NULL,
        PRIMARY KEY (image_id, device_name)
    );
CREATE INDEX bdm_by_snapshot ON image_block_devices (snapshot_id);
CREATE TABLE launch_permissions (
        image_id   TEXT COLLATE "C" NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        account_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (image_id, account_id)
    );
CREATE TABLE instances (
        id                      TEXT COLLATE "C" PRIMARY KEY,
        account_id              TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region                  TEXT COLLATE "C" NOT NULL,
        reservation_id          TEXT COLLATE "C" NOT NULL,
        image_id                TEXT COLLATE "C" NOT NULL,
        instance_type           TEXT COLLATE "C" NOT NULL,
        architecture            TEXT COLLATE "C" NOT NULL,
        vcpus                   BIGINT NOT NULL,
        memory_mib              BIGINT NOT NULL,
        state                   TEXT COLLATE "C" NOT NULL,
        transition_reason       TEXT COLLATE "C" NOT NULL DEFAULT '',
        state_reason_code       TEXT COLLATE "C",
        state_reason_message    TEXT COLLATE "C",
        key_name                TEXT COLLATE "C",
        public_key              TEXT COLLATE "C",
        subnet_id               TEXT COLLATE "C" NOT NULL,
        vpc_id                  TEXT COLLATE "C" NOT NULL,
        availability_zone       TEXT COLLATE "C" NOT NULL,
        private_ip              TEXT COLLATE "C" NOT NULL,
        user_data               BYTEA,
        client_token            TEXT COLLATE "C",
        launch_index            BIGINT NOT NULL,
        http_tokens             TEXT COLLATE "C" NOT NULL,
        http_endpoint           TEXT COLLATE "C" NOT NULL,
        hop_limit               BIGINT NOT NULL,
        disable_api_termination BIGINT NOT NULL,
        shutdown_behavior       TEXT COLLATE "C" NOT NULL,
        root_device_name        TEXT COLLATE "C" NOT NULL,
        kernel_file             TEXT COLLATE "C",
        ramdisk_file            TEXT COLLATE "C",
        kernel_cmdline          TEXT COLLATE "C",
        launch_time             TEXT COLLATE "C" NOT NULL,
        ready_at                TEXT COLLATE "C",
        terminated_at           TEXT COLLATE "C",
        request_hash            TEXT COLLATE "C"
    , wants_public_ip BIGINT NOT NULL DEFAULT 0, public_ip TEXT COLLATE "C", disable_api_stop BIGINT NOT NULL DEFAULT 0, ebs_optimized BIGINT NOT NULL DEFAULT 0, monitoring BIGINT NOT NULL DEFAULT 0, source_dest_check BIGINT NOT NULL DEFAULT 1, cpu_credits TEXT COLLATE "C");
CREATE INDEX instances_by_scope ON instances (account_id, region);
CREATE INDEX instances_by_token ON instances (account_id, region, client_token);
CREATE TABLE instance_groups (
        instance_id TEXT COLLATE "C" NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
        group_id    TEXT COLLATE "C" NOT NULL,
        position    BIGINT NOT NULL,
        PRIMARY KEY (instance_id, group_id)
    );
CREATE INDEX instance_groups_by_group ON instance_groups (group_id);
CREATE TABLE volumes (
        id                    TEXT COLLATE "C" PRIMARY KEY,
        account_id            TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region                TEXT COLLATE "C" NOT NULL,
        availability_zone     TEXT COLLATE "C" NOT NULL,
        size_gib              BIGINT NOT NULL,
        volume_type           TEXT COLLATE "C" NOT NULL,
        snapshot_id           TEXT COLLATE "C" REFERENCES snapshots(id),
        file                  TEXT COLLATE "C" NOT NULL,
        state                 TEXT COLLATE "C" NOT NULL,
        instance_id           TEXT COLLATE "C" REFERENCES instances(id) ON DELETE SET NULL,
        device_name           TEXT COLLATE "C",
        delete_on_termination BIGINT NOT NULL,
        created_at            TEXT COLLATE "C" NOT NULL
    , iops BIGINT, throughput BIGINT, encrypted BIGINT NOT NULL DEFAULT 0, kms_key_id TEXT COLLATE "C", multi_attach BIGINT NOT NULL DEFAULT 0, auto_enable_io BIGINT NOT NULL DEFAULT 0, attach_state TEXT COLLATE "C", attach_time TEXT COLLATE "C", client_token TEXT COLLATE "C", force_detach BIGINT NOT NULL DEFAULT 0, source_snapshot_id TEXT COLLATE "C");
CREATE INDEX volumes_by_instance ON volumes (instance_id);
CREATE INDEX volumes_by_snapshot ON volumes (snapshot_id);
CREATE TABLE import_tasks (
        id             TEXT COLLATE "C" PRIMARY KEY,
        account_id     TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region         TEXT COLLATE "C" NOT NULL,
        kind           TEXT COLLATE "C" NOT NULL,
        url            TEXT COLLATE "C" NOT NULL,
        format         TEXT COLLATE "C" NOT NULL,
        description    TEXT COLLATE "C" NOT NULL,
        architecture   TEXT COLLATE "C",
        status         TEXT COLLATE "C" NOT NULL,
        status_message TEXT COLLATE "C" NOT NULL,
        progress       BIGINT NOT NULL,
        snapshot_id    TEXT COLLATE "C",
        image_id       TEXT COLLATE "C",
        disk_size      BIGINT,
        created_at     TEXT COLLATE "C" NOT NULL
    );
CREATE INDEX import_tasks_by_scope ON import_tasks (account_id, region);
CREATE UNIQUE INDEX instances_by_public_ip ON instances (public_ip) WHERE public_ip IS NOT NULL;
CREATE TABLE workflows (
        id          TEXT COLLATE "C" PRIMARY KEY,
        kind        TEXT COLLATE "C" NOT NULL,
        instance_id TEXT COLLATE "C",
        params      TEXT COLLATE "C" NOT NULL,
        step        TEXT COLLATE "C" NOT NULL,
        status      TEXT COLLATE "C" NOT NULL,
        attempts    BIGINT NOT NULL DEFAULT 0,
        error       TEXT COLLATE "C",
        created_at  TEXT COLLATE "C" NOT NULL,
        updated_at  TEXT COLLATE "C" NOT NULL
    );
CREATE UNIQUE INDEX workflows_one_actor ON workflows (instance_id)
        WHERE status = 'running' AND instance_id IS NOT NULL;
CREATE INDEX workflows_by_status ON workflows (status);
CREATE TABLE client_tokens (
        account_id     TEXT COLLATE "C" NOT NULL,
        region         TEXT COLLATE "C" NOT NULL,
        token          TEXT COLLATE "C" NOT NULL,
        reservation_id TEXT COLLATE "C" NOT NULL,
        request_hash   TEXT COLLATE "C" NOT NULL,
        created_at     TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (account_id, region, token)
    );
CREATE INDEX instances_by_reservation ON instances (reservation_id);
CREATE TABLE dhcp_options (
        id         TEXT COLLATE "C" PRIMARY KEY,
        account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region     TEXT COLLATE "C" NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL
    );
CREATE TABLE dhcp_option_values (
        dhcp_options_id TEXT COLLATE "C" NOT NULL REFERENCES dhcp_options(id) ON DELETE CASCADE,
        key             TEXT COLLATE "C" NOT NULL,
        position        BIGINT NOT NULL,
        value           TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (dhcp_options_id, key, position)
    );
CREATE TABLE internet_gateways (
        id         TEXT COLLATE "C" PRIMARY KEY,
        account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region     TEXT COLLATE "C" NOT NULL,
        vpc_id     TEXT COLLATE "C" REFERENCES vpcs(id),
        created_at TEXT COLLATE "C" NOT NULL
    );
CREATE UNIQUE INDEX one_gateway_per_vpc ON internet_gateways (vpc_id) WHERE vpc_id IS NOT NULL;
CREATE TABLE route_tables (
        id               TEXT COLLATE "C" PRIMARY KEY,
        account_id       TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region           TEXT COLLATE "C" NOT NULL,
        vpc_id           TEXT COLLATE "C" NOT NULL REFERENCES vpcs(id),
        main_association TEXT COLLATE "C" UNIQUE,
        created_at       TEXT COLLATE "C" NOT NULL
    );
CREATE UNIQUE INDEX one_main_table ON route_tables (vpc_id) WHERE main_association IS NOT NULL;
CREATE INDEX route_tables_by_scope ON route_tables (account_id, region);
CREATE TABLE routes (
        route_table_id TEXT COLLATE "C" NOT NULL REFERENCES route_tables(id),
        destination    TEXT COLLATE "C" NOT NULL,
        target         TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (route_table_id, destination)
    );
CREATE TABLE route_table_associations (
        id             TEXT COLLATE "C" PRIMARY KEY,
        route_table_id TEXT COLLATE "C" NOT NULL REFERENCES route_tables(id),
        subnet_id      TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES subnets(id)
    );
CREATE TABLE addresses (
        allocation_id  TEXT COLLATE "C" PRIMARY KEY,
        account_id     TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region         TEXT COLLATE "C" NOT NULL,
        public_ip      TEXT COLLATE "C" NOT NULL UNIQUE,
        instance_id    TEXT COLLATE "C" UNIQUE REFERENCES instances(id),
        association_id TEXT COLLATE "C" UNIQUE,
        created_at     TEXT COLLATE "C" NOT NULL
    );
CREATE TABLE network_acls (
        id         TEXT COLLATE "C" PRIMARY KEY,
        account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region     TEXT COLLATE "C" NOT NULL,
        vpc_id     TEXT COLLATE "C" NOT NULL REFERENCES vpcs(id),
        is_default BIGINT NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL
    );
CREATE UNIQUE INDEX one_default_acl ON network_acls (vpc_id) WHERE is_default = 1;
CREATE INDEX network_acls_by_scope ON network_acls (account_id, region);
CREATE TABLE network_acl_entries (
        acl_id      TEXT COLLATE "C" NOT NULL REFERENCES network_acls(id) ON DELETE CASCADE,
        egress      BIGINT NOT NULL,
        rule_number BIGINT NOT NULL,
        protocol    TEXT COLLATE "C" NOT NULL,
        allow       BIGINT NOT NULL,
        cidr        TEXT COLLATE "C" NOT NULL,
        from_port   BIGINT,
        to_port     BIGINT,
        PRIMARY KEY (acl_id, egress, rule_number)
    );
CREATE TABLE network_acl_associations (
        id        TEXT COLLATE "C" PRIMARY KEY,
        acl_id    TEXT COLLATE "C" NOT NULL REFERENCES network_acls(id),
        subnet_id TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES subnets(id) ON DELETE CASCADE
    );
CREATE TABLE network_interfaces (
        id                    TEXT COLLATE "C" PRIMARY KEY,
        account_id            TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region                TEXT COLLATE "C" NOT NULL,
        vpc_id                TEXT COLLATE "C" NOT NULL REFERENCES vpcs(id),
        subnet_id             TEXT COLLATE "C" NOT NULL REFERENCES subnets(id),
        availability_zone     TEXT COLLATE "C" NOT NULL,
        private_ip            TEXT COLLATE "C" NOT NULL,
        description           TEXT COLLATE "C" NOT NULL DEFAULT '',
        source_dest_check     BIGINT NOT NULL DEFAULT 1,
        instance_id           TEXT COLLATE "C" REFERENCES instances(id),
        device_index          BIGINT,
        attachment_id         TEXT COLLATE "C" UNIQUE,
        attachment_status     TEXT COLLATE "C",
        attach_time           TEXT COLLATE "C",
        delete_on_termination BIGINT NOT NULL DEFAULT 0,
        created_at            TEXT COLLATE "C" NOT NULL,
        UNIQUE (subnet_id, private_ip)
    );
CREATE UNIQUE INDEX one_interface_per_device ON network_interfaces (instance_id, device_index)
        WHERE instance_id IS NOT NULL;
CREATE INDEX network_interfaces_by_scope ON network_interfaces (account_id, region);
CREATE TABLE network_interface_groups (
        interface_id TEXT COLLATE "C" NOT NULL REFERENCES network_interfaces(id) ON DELETE CASCADE,
        group_id     TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (interface_id, group_id)
    );
CREATE UNIQUE INDEX volume_client_tokens ON volumes (account_id, region, client_token)
        WHERE client_token IS NOT NULL;
CREATE UNIQUE INDEX one_volume_per_device ON volumes (instance_id, device_name) WHERE instance_id IS NOT NULL;
CREATE TABLE volume_modifications (
        volume_id           TEXT COLLATE "C" PRIMARY KEY REFERENCES volumes(id) ON DELETE CASCADE,
        state               TEXT COLLATE "C" NOT NULL,
        original_size       BIGINT NOT NULL,
        target_size         BIGINT NOT NULL,
        original_type       TEXT COLLATE "C" NOT NULL,
        target_type         TEXT COLLATE "C" NOT NULL,
        original_iops       BIGINT,
        target_iops         BIGINT,
        original_throughput BIGINT,
        target_throughput   BIGINT,
        start_time          TEXT COLLATE "C" NOT NULL,
        end_time            TEXT COLLATE "C"
    );
CREATE TABLE ebs_defaults (
        account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region     TEXT COLLATE "C" NOT NULL,
        encrypted  BIGINT NOT NULL,
        kms_key_id TEXT COLLATE "C",
        PRIMARY KEY (account_id, region)
    );
CREATE TABLE snapshot_permissions (
        snapshot_id TEXT COLLATE "C" NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
        grantee     TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (snapshot_id, grantee)
    );
CREATE INDEX snapshot_permissions_by_grantee ON snapshot_permissions (grantee);
CREATE TABLE launch_templates (
        id           TEXT COLLATE "C" PRIMARY KEY,
        account_id   TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        region       TEXT COLLATE "C" NOT NULL,
        name         TEXT COLLATE "C" NOT NULL,
        default_version BIGINT NOT NULL,
        -- The last number given to a version: deleted numbers are never reused.
        last_number  BIGINT NOT NULL,
        client_token TEXT COLLATE "C",
        created_at   TEXT COLLATE "C" NOT NULL,
        UNIQUE (account_id, region, name)
    );
CREATE UNIQUE INDEX launch_templates_by_token ON launch_templates (account_id, region, client_token)
        WHERE client_token IS NOT NULL;
CREATE TABLE launch_template_versions (
        template_id  TEXT COLLATE "C" NOT NULL REFERENCES launch_templates(id) ON DELETE CASCADE,
        version      BIGINT NOT NULL,
        description  TEXT COLLATE "C",
        data         TEXT COLLATE "C" NOT NULL,
        client_token TEXT COLLATE "C",
        created_at   TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (template_id, version)
    );
CREATE UNIQUE INDEX launch_template_versions_by_token ON launch_template_versions (template_id, client_token)
        WHERE client_token IS NOT NULL;
CREATE TABLE console_sessions (
        access_key_id TEXT COLLATE "C" PRIMARY KEY,
        account_id    TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
        secret        TEXT COLLATE "C" NOT NULL,
        token_hash    TEXT COLLATE "C" NOT NULL,
        expires_at    TEXT COLLATE "C" NOT NULL,
        created_at    TEXT COLLATE "C" NOT NULL
    );
CREATE FUNCTION key_pairs_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER key_pairs_tags_go AFTER DELETE ON key_pairs FOR EACH ROW EXECUTE FUNCTION key_pairs_tags_go();
CREATE FUNCTION vpcs_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER vpcs_tags_go AFTER DELETE ON vpcs FOR EACH ROW EXECUTE FUNCTION vpcs_tags_go();
CREATE FUNCTION subnets_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER subnets_tags_go AFTER DELETE ON subnets FOR EACH ROW EXECUTE FUNCTION subnets_tags_go();
CREATE FUNCTION security_groups_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER security_groups_tags_go AFTER DELETE ON security_groups FOR EACH ROW EXECUTE FUNCTION security_groups_tags_go();
CREATE FUNCTION security_group_rules_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER security_group_rules_tags_go AFTER DELETE ON security_group_rules FOR EACH ROW EXECUTE FUNCTION security_group_rules_tags_go();
CREATE FUNCTION images_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER images_tags_go AFTER DELETE ON images FOR EACH ROW EXECUTE FUNCTION images_tags_go();
CREATE FUNCTION instances_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER instances_tags_go AFTER DELETE ON instances FOR EACH ROW EXECUTE FUNCTION instances_tags_go();
CREATE FUNCTION volumes_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER volumes_tags_go AFTER DELETE ON volumes FOR EACH ROW EXECUTE FUNCTION volumes_tags_go();
CREATE FUNCTION snapshots_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER snapshots_tags_go AFTER DELETE ON snapshots FOR EACH ROW EXECUTE FUNCTION snapshots_tags_go();
CREATE FUNCTION snapshots_tags_hidden() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER snapshots_tags_hidden AFTER UPDATE OF deleted ON snapshots FOR EACH ROW WHEN (NEW.deleted = 1) EXECUTE FUNCTION snapshots_tags_hidden();
CREATE FUNCTION dhcp_options_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER dhcp_options_tags_go AFTER DELETE ON dhcp_options FOR EACH ROW EXECUTE FUNCTION dhcp_options_tags_go();
CREATE FUNCTION internet_gateways_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER internet_gateways_tags_go AFTER DELETE ON internet_gateways FOR EACH ROW EXECUTE FUNCTION internet_gateways_tags_go();
CREATE FUNCTION route_tables_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER route_tables_tags_go AFTER DELETE ON route_tables FOR EACH ROW EXECUTE FUNCTION route_tables_tags_go();
CREATE FUNCTION addresses_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.allocation_id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER addresses_tags_go AFTER DELETE ON addresses FOR EACH ROW EXECUTE FUNCTION addresses_tags_go();
CREATE FUNCTION addresses_leave_terminated() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        UPDATE addresses SET instance_id = NULL, association_id = NULL WHERE instance_id = NEW.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER addresses_leave_terminated AFTER UPDATE OF state ON instances FOR EACH ROW WHEN (NEW.state = 'terminated') EXECUTE FUNCTION addresses_leave_terminated();
CREATE FUNCTION addresses_leave_deleted() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        UPDATE addresses SET instance_id = NULL, association_id = NULL WHERE instance_id = OLD.id;
        RETURN OLD;
    END $fn$;
CREATE TRIGGER addresses_leave_deleted BEFORE DELETE ON instances FOR EACH ROW EXECUTE FUNCTION addresses_leave_deleted();
CREATE FUNCTION network_acls_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER network_acls_tags_go AFTER DELETE ON network_acls FOR EACH ROW EXECUTE FUNCTION network_acls_tags_go();
CREATE FUNCTION network_interfaces_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER network_interfaces_tags_go AFTER DELETE ON network_interfaces FOR EACH ROW EXECUTE FUNCTION network_interfaces_tags_go();
CREATE FUNCTION interfaces_leave_terminated() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM network_interfaces WHERE instance_id = NEW.id AND delete_on_termination = 1;
        UPDATE network_interfaces SET instance_id = NULL, device_index = NULL, attachment_id = NULL,
        attachment_status = NULL, attach_time = NULL, delete_on_termination = 0
        WHERE instance_id = NEW.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER interfaces_leave_terminated AFTER UPDATE OF state ON instances FOR EACH ROW WHEN (NEW.state = 'terminated') EXECUTE FUNCTION interfaces_leave_terminated();
CREATE FUNCTION interfaces_leave_deleted() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        UPDATE network_interfaces SET instance_id = NULL, device_index = NULL, attachment_id = NULL,
        attachment_status = NULL, attach_time = NULL, delete_on_termination = 0
        WHERE instance_id = OLD.id;
        RETURN OLD;
    END $fn$;
CREATE TRIGGER interfaces_leave_deleted BEFORE DELETE ON instances FOR EACH ROW EXECUTE FUNCTION interfaces_leave_deleted();
CREATE FUNCTION launch_templates_tags_go() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM tags WHERE resource_id = OLD.id;
        RETURN NULL;
    END $fn$;
CREATE TRIGGER launch_templates_tags_go AFTER DELETE ON launch_templates FOR EACH ROW EXECUTE FUNCTION launch_templates_tags_go();
