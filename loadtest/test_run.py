"""Unit tests of loadtest/run.py's decisions: the command line, the settings and commands it
derives from the options and the environment, and the tables' check.

    PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s loadtest -p 'test_*.py'
"""

import unittest

import run


def parse(*argv, **environ):
    return run.parse_arguments(list(argv), environ)


class Arguments(unittest.TestCase):
    def test_defaults(self):
        self.assertEqual(parse("smoke"), run.Options("smoke", "embedded", "", "marquee", False, True, False, 1,
                                                     False))
        self.assertEqual(parse("expiry-storm").setup, "protected")
        self.assertFalse(parse("ticket-opening").samples)
        self.assertTrue(parse("ticket-opening", SAMPLES="1").samples)

    def test_values_follow_a_space_or_an_equals_sign(self):
        options = parse("seed-replay", "--target=floor", "--bulk", "--stack", "postgres")
        self.assertEqual((options.target, options.bulk, options.stack), ("floor", True, "postgres"))
        self.assertEqual(parse("expiry-storm", "--setup=no-jitter").folder_name(), "expiry-storm-no-jitter")
        self.assertEqual(options.folder_name(), "seed-replay-floor")
        self.assertEqual(parse("booking-rush", "--stack=mariadb").stack, "mariadb")

    def test_help(self):
        for argv in ([], ["--help"], ["smoke", "-h"]):
            with self.assertRaises(run.ShowHelp):
                parse(*argv)

    def test_mistakes_are_named(self):
        cases = {
            ("nope",): "unknown scenario 'nope'",
            ("smoke", "--stack"): "--stack needs a value",
            ("smoke", "--stack", "redis"): "--stack is embedded, postgres or mariadb, not 'redis'",
            ("smoke", "--stack", "mysql"): "--stack is embedded, postgres or mariadb, not 'mysql'",
            ("smoke", "--target", "x"): "--target is marquee or floor, not 'x'",
            ("smoke", "--fast"): "unknown argument '--fast' (see loadtest/run --help)",
            ("smoke", "--setup", "no-jitter"): "--setup applies to expiry-storm only",
            ("lookup", "--target", "floor"): "--target floor applies to seed-replay and mixed only",
            ("smoke", "--faults"): "--faults applies to mixed only",
            ("mixed", "--faults"): "--faults needs --stack postgres or --target floor",
            ("mixed", "--faults", "--stack", "mariadb"): "--faults needs --stack postgres or --target floor",
            # The cache's single-flight switch is no longer a setting: nothing to turn off.
            ("expiry-storm", "--setup", "no-single-flight"):
                "--setup is protected or no-jitter, not 'no-single-flight'",
        }
        for argv, message in cases.items():
            with self.subTest(argv=argv), self.assertRaises(run.UsageError) as raised:
                parse(*argv)
            self.assertIn(message, str(raised.exception))
        with self.assertRaisesRegex(run.UsageError, "SAMPLES is 1 or 0, not 'yes'"):
            parse("smoke", SAMPLES="yes")

    def test_faults_and_instances(self):
        options = parse("mixed", "--stack", "postgres", "--faults", INSTANCES="2", DURATION="1m40s")
        self.assertEqual((options.faults, options.instances), (True, 2))
        self.assertEqual(options.folder_name(), "mixed-x2-faults")
        self.assertEqual(parse("mixed", "--target", "floor", "--faults").folder_name(), "mixed-floor-faults")
        self.assertEqual(run.command_line(options, {"INSTANCES": "2"}),
                         "INSTANCES=2 loadtest/run mixed --stack postgres --faults")
        # The restart is at +75 s: a fault run must last long enough to see the recovery.
        with self.assertRaisesRegex(run.UsageError, "at least 100s"):
            parse("mixed", "--stack", "postgres", "--faults", DURATION="90s")
        with self.assertRaisesRegex(run.UsageError, "DURATION"):
            parse("mixed", "--stack", "postgres", "--faults", DURATION="long")
        with self.assertRaisesRegex(run.UsageError, "FAULT_GRACE"):
            parse("mixed", "--stack", "postgres", "--faults", FAULT_GRACE="ten")
        self.assertEqual((run.fault_grace({}), run.fault_grace({"FAULT_GRACE": "1m"})), (10.0, 60.0))
        # --faults brings its own servers; --private asks for them without faults.
        self.assertTrue(options.private)
        private = parse("lookup", "--stack", "postgres", "--private")
        self.assertEqual((private.private, private.faults, private.folder_name()), (True, False, "lookup-private"))
        self.assertEqual(run.command_line(private, {}), "loadtest/run lookup --stack postgres --private")
        with self.assertRaisesRegex(run.UsageError, "--private needs --stack postgres or --target floor"):
            parse("smoke", "--private")
        for environ in ({"INSTANCES": "0"}, {"INSTANCES": "two"}):
            with self.subTest(environ=environ), self.assertRaisesRegex(run.UsageError, "INSTANCES is a whole"):
                run.parse_arguments(["mixed", "--stack", "postgres"], environ)
        for argv in (["smoke", "--stack", "postgres"], ["mixed"], ["mixed", "--target", "floor"]):
            with self.subTest(argv=argv), self.assertRaisesRegex(run.UsageError, "INSTANCES applies to mixed"):
                run.parse_arguments(argv, {"INSTANCES": "2"})

    def test_wire_is_one_or_zero_and_needs_tcpdump(self):
        self.assertFalse(parse("smoke").wire)
        with self.assertRaisesRegex(run.UsageError, "WIRE is 1 or 0, not 'yes'"):
            parse("smoke", WIRE="yes")
        found = run.wire.tcpdump
        try:
            run.wire.tcpdump = lambda: None
            with self.assertRaisesRegex(run.UsageError, "WIRE=1 needs tcpdump"):
                parse("smoke", WIRE="1")
            run.wire.tcpdump = lambda: "/usr/bin/tcpdump"
            self.assertTrue(parse("smoke", WIRE="1").wire)
        finally:
            run.wire.tcpdump = found

    def test_command_line_shows_the_knobs_set_then_the_servers_variables(self):
        environ = {"DURATION": "30s", "RATE": "", "MARQUEE_BIN": "/tmp/m", "HOME": "/root",
                   "MARQUEE__LOG__FILTER": "info", "MARQUEE__CACHE__L1_TTL": "0s"}
        self.assertEqual(run.command_line(parse("expiry-storm", "--setup", "no-jitter", "--bulk"), environ),
                         "DURATION=30s MARQUEE_BIN=/tmp/m MARQUEE__CACHE__L1_TTL=0s MARQUEE__LOG__FILTER=info "
                         "loadtest/run expiry-storm --stack embedded --setup no-jitter --bulk")
        self.assertEqual(run.command_line(parse("seed-replay", "--target", "floor"), {}),
                         "loadtest/run seed-replay --target floor")

    def test_backends_must_be_on_loopback(self):
        self.assertEqual(run.backend_urls({"PG_URL": "postgres://u:p@127.0.0.1:5433/"}),
                         ({"postgres": "postgres://u:p@127.0.0.1:5433", "mariadb": "mysql://root@127.0.0.1:3306"},
                          "redis://127.0.0.1:6379"))
        self.assertEqual(run.backend_urls({"MYSQL_URL": "mariadb://u:p@localhost:3307/"})[0]["mariadb"],
                         "mariadb://u:p@localhost:3307")
        run.backend_urls({"PG_URL": "postgres://localhost", "REDIS_URL": "redis://[::1]:6380"})
        for environ in ({"PG_URL": "postgres://db.example:5432"}, {"REDIS_URL": "redis://10.0.0.1:6379"},
                        {"PG_URL": "postgres://127.0.0.1:5432/marquee"}, {"MYSQL_URL": "mysql://db.example:3306"},
                        {"MYSQL_URL": "mysql://root@127.0.0.1:3306/marquee"}):
            with self.subTest(environ=environ), self.assertRaisesRegex(run.UsageError, "loopback"):
                run.backend_urls(environ)


class Settings(unittest.TestCase):
    def settings(self, options, **environ):
        servers = {"postgres": "postgres://127.0.0.1", "mariadb": "mysql://root@127.0.0.1:3306"}
        stack = run.stack_for(options, servers, "redis://127.0.0.1", "/tmp/w", 42)
        return run.server_settings(options, environ, 8080, "s3cret", stack)

    def test_the_stacks(self):
        embedded = self.settings(parse("smoke"))
        self.assertEqual((embedded["MARQUEE__DATABASE__URL"], embedded["MARQUEE__REDIS__URL"]),
                         ("/tmp/w/marquee.sqlite3", ""))
        self.assertNotIn("MARQUEE_ENV", embedded)
        postgres = self.settings(parse("smoke", "--stack", "postgres"))
        self.assertEqual(postgres["MARQUEE_ENV"], "production")
        self.assertEqual(postgres["MARQUEE__DATABASE__URL"], "postgres://127.0.0.1/marquee_loadtest_42")
        self.assertEqual(postgres["MARQUEE__CACHE__NAMESPACE"], "marquee:loadtest:42")
        self.assertEqual((postgres["MARQUEE__SERVER__BIND"], postgres["MARQUEE__LOG__FILTER"]),
                         ("127.0.0.1:8080", "warn"))

    def test_the_mariadb_stack_is_the_postgres_one_on_mariadb(self):
        mariadb = self.settings(parse("smoke", "--stack", "mariadb"))
        self.assertEqual(mariadb["MARQUEE_ENV"], "production")
        self.assertEqual(mariadb["MARQUEE__DATABASE__URL"], "mysql://root@127.0.0.1:3306/marquee_loadtest_42")
        self.assertEqual(mariadb["MARQUEE__CACHE__NAMESPACE"], "marquee:loadtest:42")
        self.assertEqual(mariadb["MARQUEE__REDIS__URL"], "redis://127.0.0.1")
        postgres = self.settings(parse("smoke", "--stack", "postgres"))
        self.assertEqual(mariadb.keys(), postgres.keys())
        stack = run.stack_for(parse("smoke", "--stack", "mariadb"), {"mariadb": "mysql://root@127.0.0.1:3306"},
                              "redis://127.0.0.1", "/tmp/w", 42)
        self.assertEqual((stack.database, stack.namespace, stack.server.client),
                         ("marquee_loadtest_42", "marquee:loadtest:42", "mysql"))
        self.assertTrue(stack.description.startswith("mariadb: MariaDB at mysql://root@127.0.0.1:3306 "
                                                     "(database marquee_loadtest_42)"))

    def test_expiry_storm_short_ttls_and_its_setups(self):
        protected = self.settings(parse("expiry-storm"), STORM_BASE_TTL="5s")
        self.assertEqual(protected["MARQUEE__CACHE_TTL__CONCERT__BASE_TTL"], "5s")
        self.assertEqual(protected["MARQUEE__CACHE_TTL__CONCERT__JITTER"], "10s")
        self.assertEqual(protected["MARQUEE__CACHE__REFRESH__ENABLED"], "false")
        no_jitter = self.settings(parse("expiry-storm", "--setup", "no-jitter"), STORM_JITTER="3s")
        self.assertEqual(no_jitter["MARQUEE__CACHE_TTL__CONCERT__JITTER"], "0s")
        self.assertFalse(any("SINGLE_FLIGHT" in name for name in {**protected, **no_jitter}))

    def test_booking_rush_goes_around_the_waiting_room_unless_told(self):
        rush = self.settings(parse("booking-rush", "--stack", "postgres"))
        self.assertEqual(rush["MARQUEE__QUEUE__ENABLED"], "false")
        told = self.settings(parse("booking-rush"), MARQUEE__QUEUE__ENABLED="true")
        self.assertEqual(told["MARQUEE__QUEUE__ENABLED"], "true")
        self.assertNotIn("MARQUEE__QUEUE__ENABLED", self.settings(parse("smoke")))

    def test_ticket_opening_waiting_room_knobs_default_to_the_servers_own(self):
        settings = self.settings(parse("ticket-opening"), ACTIVE_LIMIT="50",
                                 MARQUEE__QUEUE__ADMIT_PER_SECOND="250", MARQUEE__QUEUE__ACTIVE_LIMIT="9")
        self.assertEqual(settings["MARQUEE__QUEUE__ENABLED"], "true")
        self.assertEqual(settings["MARQUEE__QUEUE__ADMIT_PER_SECOND"], "250")
        self.assertEqual(settings["MARQUEE__QUEUE__ACTIVE_LIMIT"], "50")
        self.assertEqual((settings["MARQUEE__QUEUE__ACTIVE_TTL"], settings["MARQUEE__QUEUE__IDLE_TIMEOUT"]),
                         ("10m", "30s"))
        self.assertEqual(run.admit_per_second({}), "100")

    def test_seeding(self):
        self.assertEqual(run.seed_commands(parse("smoke"), {}), [["seed"]])
        self.assertEqual(run.seed_commands(parse("lookup", "--bulk"), {"BULK_SEATS": "10"}),
                         [["seed", "--concerts", "20000", "--schedules", "1", "--seats", "10"]])
        self.assertEqual(run.seed_commands(parse("ticket-opening"), {"USERS": "300"})[1],
                         ["seed", "--concerts", "1", "--schedules", "1", "--seats", "300"])

    def test_k6_variables(self):
        base = "http://127.0.0.1:8080"
        self.assertEqual(run.k6_variables(parse("smoke"), {}, [base], "s"),
                         [f"BASE_URL={base}", "CONCERTS=120", "SCHEDULES_PER_CONCERT=4"])
        self.assertEqual(run.k6_variables(parse("seed-replay", "--target", "floor", "--bulk"), {}, [base], "s"),
                         [f"BASE_URL={base}", "TARGET=floor"])
        self.assertEqual(run.k6_variables(parse("ticket-opening", "--bulk"), {"BULK_CONCERTS": "7"}, [base], "s")[1:],
                         ["JWT_SECRET=s", "CONCERT_ID=121", "CONCERTS=7", "SCHEDULES_PER_CONCERT=1"])

    def test_mixed_spreads_over_the_instances_and_says_whether_faults_are_on(self):
        two = [base := "http://127.0.0.1:8080", "http://127.0.0.1:8081"]
        self.assertEqual(run.k6_variables(parse("mixed", "--stack", "postgres"), {}, two, "s"),
                         [f"BASE_URL={base}", f"BASE_URLS={base},http://127.0.0.1:8081", "FAULTS=0",
                          "JWT_SECRET=s", "CONCERTS=120", "SCHEDULES_PER_CONCERT=4"])
        self.assertEqual(run.k6_variables(parse("mixed", "--target", "floor", "--faults"), {}, [base], "s"),
                         [f"BASE_URL={base}", f"BASE_URLS={base}", "FAULTS=1", "TARGET=floor"])

    def test_mixed_runs_without_the_waiting_room(self):
        self.assertEqual(self.settings(parse("mixed", "--stack", "postgres"))["MARQUEE__QUEUE__ENABLED"], "false")

    def test_the_floor_holds_in_a_database_of_the_run(self):
        stack = run.stack_for(parse("mixed", "--target", "floor"), {"postgres": "postgres://127.0.0.1:5999"},
                              "redis://127.0.0.1", "/tmp/w", 42)
        self.assertEqual((stack.database, stack.server.database_url(stack.database), stack.namespace),
                         ("floor_loadtest_42", "postgres://127.0.0.1:5999/floor_loadtest_42", ""))
        self.assertEqual(run.stack_for(parse("seed-replay", "--target", "floor"), {}, "redis://127.0.0.1",
                                       "/tmp/w", 42).database, "")


class DatabaseServers(unittest.TestCase):
    def test_psql_gets_the_url_and_each_statement(self):
        server = run.Postgres("postgres://postgres@127.0.0.1:5432")
        self.assertEqual(server.command("marquee_loadtest_42", ["SELECT 1", "SELECT 2"]),
                         (["psql", "postgres://postgres@127.0.0.1:5432/marquee_loadtest_42", "-qAt",
                           "-v", "ON_ERROR_STOP=1", "-F", "\x1f", "-c", "SELECT 1", "-c", "SELECT 2"], {}))
        self.assertEqual(server.drop_statement("d"), 'DROP DATABASE IF EXISTS "d" WITH (FORCE)')

    def test_mysql_gets_the_urls_parts_and_its_password_in_the_environment(self):
        server = run.MariaDB("mysql://loader:p%40ss@127.0.0.1:3307")
        self.assertEqual(server.command("marquee_loadtest_42", ["SELECT 1", "SELECT 2"]),
                         (["mysql", "-N", "-B", "--protocol=tcp", "-h", "127.0.0.1", "-P", "3307", "-u", "loader",
                           "-D", "marquee_loadtest_42", "-e", "SELECT 1;\nSELECT 2"], {"MYSQL_PWD": "p@ss"}))
        # No database to create or drop one; no password, no MYSQL_PWD; 3306 when the URL has no port.
        self.assertEqual(run.MariaDB("mariadb://root@[::1]").command("", ["DROP DATABASE IF EXISTS `d`"]),
                         (["mysql", "-N", "-B", "--protocol=tcp", "-h", "::1", "-P", "3306", "-u", "root",
                           "-e", "DROP DATABASE IF EXISTS `d`"], {}))
        self.assertEqual(server.create_statement("d"),
                         "CREATE DATABASE `d` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        self.assertEqual(server.database_url("d"), "mysql://loader:p%40ss@127.0.0.1:3307/d")

    def test_rows_split_on_each_dialects_separator(self):
        # A time stamp holds a space: neither dialect separates columns with one.
        cases = ((run.Postgres("postgres://127.0.0.1"), "0\x1f2026-12-07 10:00:00.5+00\n",
                  ["0", "2026-12-07 10:00:00.5+00"]),
                 (run.MariaDB("mysql://127.0.0.1"), "0\t2026-12-07 10:00:00.500000\n",
                  ["0", "2026-12-07 10:00:00.500000"]))
        for server, output, row in cases:
            with self.subTest(server=server.stack):
                server.execute = lambda *_, text=output: text
                self.assertEqual(server.rows("d", "SELECT ..."), [row])


class Tables(unittest.TestCase):
    def test_sound_only_with_no_double_sale_and_one_payment_per_sale(self):
        line, sound = run.table_check("booking-rush", ["0", "0", "49", "49", "49"])
        self.assertEqual(line, "RUSH check: seats sold twice=0, seats paid twice=0, sold=49, confirmed=49, payments=49")
        self.assertTrue(sound)
        self.assertTrue(run.table_check("ticket-opening", ["0"] * 5)[0].startswith("OPENING check:"))
        for row in (["1", "0", "2", "2", "2"], ["0", "1", "2", "2", "2"], ["0", "0", "2", "2", "1"],
                    ["0", "0", "2", "1", "2"]):
            with self.subTest(row=row):
                self.assertFalse(run.table_check("booking-rush", row)[1])

    def test_mixed_also_matches_the_payments_to_the_wallets_debits(self):
        line, sound = run.table_check("mixed", ["0", "0", "2", "2", "2"], ["300", "500", "200"])
        self.assertEqual(line, "MIXED check: seats sold twice=0, seats paid twice=0, sold=2, confirmed=2, "
                               "payments=2, paid=300, debited=300 (credited 500, left in wallets 200)")
        self.assertTrue(sound)
        # A payment that debited nothing, or a debit without a payment.
        self.assertFalse(run.table_check("mixed", ["0", "0", "2", "2", "2"], ["300", "500", "201"])[1])
        self.assertFalse(run.table_check("mixed", ["0", "0", "2", "2", "2"], ["300", "500", "199"])[1])

    def test_the_money_check_reads_the_charges_from_their_idempotency_keys(self):
        import sqlite3
        with sqlite3.connect(":memory:") as db:
            db.executescript("""
                CREATE TABLE payments (amount INTEGER);
                CREATE TABLE idempotency_keys (request TEXT, response_status INTEGER);
                CREATE TABLE wallets (balance INTEGER);
                INSERT INTO payments VALUES (300), (200);
                INSERT INTO idempotency_keys VALUES ('charge:300', 200), ('charge:250', 200),
                    ('charge:999', 422), ('pay:1', 200), ('charge:5', NULL);
                INSERT INTO wallets VALUES (50), (0);""")
            row = [str(v) for v in db.execute(run.MONEY_CHECK.format(integer="INTEGER")).fetchone()]
        self.assertEqual(row, ["500", "550", "50"])
        self.assertTrue(run.table_check("mixed", ["0", "0", "2", "2", "2"], row)[1])

    def test_the_money_check_casts_in_each_dialect(self):
        self.assertIn("AS BIGINT", run.MONEY_CHECK.format(integer=run.Postgres.integer))
        self.assertIn("AS SIGNED", run.MONEY_CHECK.format(integer=run.MariaDB.integer))


if __name__ == "__main__":
    unittest.main()
