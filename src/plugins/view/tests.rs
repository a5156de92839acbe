use super::expr::{Env, Program, Value};
use super::*;

/// A query `www.example.org. A IN` over UDP from 10.1.2.3:5300 to
/// 127.0.0.1:53, ID 4660, DO set, buffer 1232, metadata `k/v` = `x`.
struct Fixed;

impl Env for Fixed {
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, String> {
        let s = |v: &str| Value::Str(v.to_owned());
        Ok(match name {
            "incidr" => {
                let (Some(Value::Str(a)), Some(Value::Str(b))) = (args.first(), args.get(1)) else {
                    return Err("args".into());
                };
                Value::Bool(incidr(a, b)?)
            }
            "metadata" => match args.first() {
                Some(Value::Str(l)) if l == "k/v" => s("x"),
                _ => s(""),
            },
            "type" => s("A"),
            "name" => s("www.example.org."),
            "class" => s("IN"),
            "proto" => s("udp"),
            "size" => Value::Int(44),
            "client_ip" => s("10.1.2.3"),
            "port" => s("5300"),
            "id" => Value::Int(4660),
            "opcode" => Value::Int(0),
            "do" => Value::Bool(true),
            "bufsize" => Value::Int(1232),
            "server_ip" => s("127.0.0.1"),
            "server_port" => s("53"),
            _ => return Err("unknown".into()),
        })
    }
}

fn run(src: &str) -> Result<Value, String> {
    let p = Program::compile(src, ENV).map_err(|e| e.render(src))?;
    p.run(&Fixed)
}

#[test]
fn expressions_evaluate_as_expr_lang() {
    let t = Value::Bool(true);
    let f = Value::Bool(false);
    let table: &[(&str, Value)] = &[
        ("name() == 'www.example.org.'", t.clone()),
        ("name() == 'notexample.com.'", f.clone()),
        ("type() in ['A', 'AAAA']", t.clone()),
        ("type() not in ['A', 'AAAA']", f.clone()),
        ("incidr(client_ip(), '10.0.0.0/8')", t.clone()),
        ("incidr(client_ip(), '192.168.0.0/16')", f.clone()),
        ("!incidr(client_ip(), '192.168.0.0/16')", t.clone()),
        ("not incidr(client_ip(), '192.168.0.0/16')", t.clone()),
        (r"name() matches '^www\\..*\\.org\\.$'", t.clone()),
        (r"name() not matches '^abc\\.'", t.clone()),
        (
            "(type() == 'A' && name() == 'x.') || client_ip() == '10.1.2.3'",
            t.clone(),
        ),
        ("type() == 'A' and proto() == 'tcp'", f),
        ("type() == 'MX' or do()", t.clone()),
        ("bufsize() >= 1232 && size() < 512", t.clone()),
        ("id() % 2 == 0", t.clone()),
        ("opcode() == 0", t.clone()),
        ("port() == '5300' && server_port() == '53'", t.clone()),
        ("server_ip() startsWith '127.'", t.clone()),
        ("name() endsWith 'example.org.'", t.clone()),
        ("name() contains 'example'", t.clone()),
        ("class() == \"IN\"", t.clone()),
        (
            "metadata('k/v') == 'x' && metadata('nope') == ''",
            t.clone(),
        ),
        ("lower('AbC') + upper('x')", Value::Str("abcX".into())),
        ("len(split(name(), '.'))", Value::Int(4)),
        ("1 + 2 * 3", Value::Int(7)),
        ("2 ** 3 ** 2", Value::Float(512.0)),
        ("-1 + 3", Value::Int(2)),
        ("7 / 2", Value::Float(3.5)),
        (
            "1..3",
            Value::Array(vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
        ),
        ("3 in 1..5", t.clone()),
        ("do() ? 'yes' : 'no'", Value::Str("yes".into())),
        ("nil ?? 'd'", Value::Str("d".into())),
        ("['a', 'b'][1]", Value::Str("b".into())),
        ("['a', 'b'][-1]", Value::Str("b".into())),
        ("'abc'[0]", Value::Str("a".into())),
        ("1 == 1.0", t.clone()),
        ("1_000 == 1000 && 0x10 == 16", t.clone()),
        ("1", Value::Int(1)),
        (
            "trimSuffix(name(), '.')",
            Value::Str("www.example.org".into()),
        ),
        (
            "hasPrefix(name(), 'www') && indexOf(name(), 'example') == 4",
            t.clone(),
        ),
        ("join(['a', 'b'], '-')", Value::Str("a-b".into())),
        ("int('42') + 1", Value::Int(43)),
        ("string(1) + 'x'", Value::Str("1x".into())),
        ("'it\\'s' == \"it's\" && `a\\b` == 'a\\\\b'", t),
    ];
    for (src, want) in table {
        assert_eq!(run(src).as_ref(), Ok(want), "{src}");
    }
}

#[test]
fn run_time_errors() {
    for src in [
        "incidr('invalid', '1.2.3.0/24')",
        "incidr(client_ip(), '10.0.0.0/33')",
        "incidr(client_ip(), 'x')",
        "id() % 0 == 1",
        "['a'][5] == 'a'",
    ] {
        assert!(run(src).is_err(), "{src}");
    }
}

#[test]
fn compile_errors_are_positioned_as_expr_lang_does() {
    let table = [
        (
            "invalid expression",
            "unexpected token Identifier(\"expression\") (1:9)\n | invalid expression\n | ........^",
        ),
        ("foo()", "unknown name foo (1:1)\n | foo()\n | ^"),
        (
            "name() == 1",
            "invalid operation: == (mismatched types string and int) (1:8)\n | name() == 1\n | .......^",
        ),
        (
            "type() == 'A' && 1",
            "invalid operation: && (mismatched types bool and int) (1:15)\n | type() == 'A' && 1\n | ..............^",
        ),
        (
            "incidr(client_ip())",
            "not enough arguments to call incidr (1:1)\n | incidr(client_ip())\n | ^",
        ),
        (
            "name('x')",
            "too many arguments to call name (1:1)\n | name('x')\n | ^",
        ),
        (
            "incidr(1, '10.0.0.0/8')",
            "cannot use int as argument (type string) to call incidr  (1:8)\n | incidr(1, '10.0.0.0/8')\n | .......^",
        ),
        (
            "name() == 'a",
            "literal not terminated (1:11)\n | name() == 'a\n | ..........^",
        ),
        (
            "(name()",
            "unexpected token EOF (1:8)\n | (name()\n | .......^",
        ),
        (
            "name() matches '('",
            "error parsing regexp: regex parse error:\n    (\n    ^\nerror: unclosed group (1:8)\n | name() matches '('\n | .......^",
        ),
        (
            "name == 'x'",
            "name is a function: call it as name() (1:1)\n | name == 'x'\n | ^",
        ),
        (
            "filter([1], # > 0)",
            "unrecognized character: U+0023 '#' (1:13)\n | filter([1], # > 0)\n | ............^",
        ),
        (
            "all([true], true)",
            "the builtin all() is not supported by ringdns's view expressions (1:1)\n | all([true], true)\n | ^",
        ),
    ];
    for (src, want) in table {
        let got = Program::compile(src, ENV)
            .map(|_| ())
            .map_err(|e| e.render(src));
        assert_eq!(got, Err(want.to_owned()), "{src}");
    }
}

#[test]
fn incidr_follows_go() {
    let table = [
        ("10.0.0.1", "10.0.0.0/8", Ok(true)),
        ("11.0.0.1", "10.0.0.0/8", Ok(false)),
        ("::ffff:10.0.0.1", "10.0.0.0/8", Ok(true)),
        ("10.0.0.1", "::ffff:10.0.0.0/104", Ok(true)),
        ("10.0.0.1", "::/0", Ok(false)),
        ("2001:db8::1", "2001:db8::/32", Ok(true)),
        ("2001:db9::1", "2001:db8::/32", Ok(false)),
        ("2001:db8::1", "10.0.0.0/8", Ok(false)),
        ("10.0.0.1", "0.0.0.0/0", Ok(true)),
        (
            "[::1]",
            "::/0",
            Err("first argument is not an IP address".to_owned()),
        ),
        (
            "10.0.0.1",
            "10.0.0.0/08",
            Err("invalid CIDR address: 10.0.0.0/08".to_owned()),
        ),
        (
            "10.0.0.1",
            "10.0.0.0",
            Err("invalid CIDR address: 10.0.0.0".to_owned()),
        ),
        (
            "10.0.0.1",
            "10.0.0.0/33",
            Err("invalid CIDR address: 10.0.0.0/33".to_owned()),
        ),
        (
            "10.0.0.1",
            "::ffff:10.0.0.0/129",
            Err("invalid CIDR address: ::ffff:10.0.0.0/129".to_owned()),
        ),
        ("10.0.0.1", "::ffff:10.0.0.0/128", Ok(false)),
        ("10.0.0.0", "::ffff:10.0.0.0/128", Ok(true)),
        ("2001:db8::1", "::ffff:10.0.0.0/104", Ok(false)),
    ];
    for (ip, cidr, want) in table {
        assert_eq!(incidr(ip, cidr), want, "{ip} {cidr}");
    }
}

fn parse(input: &str) -> Result<View, String> {
    let mut d = corefile::Dispenser::from_text("Corefile", input);
    setup(&mut d).map_err(|e| e.to_string())
}

#[test]
fn setup_as_coredns() {
    // CoreDNS's setup_test.go cases.
    let v = parse("view example {\n expr name() == 'example.com.'\n}").expect("ok");
    assert_eq!((&*v.name, v.progs.len()), ("example", 1));
    let v = parse("view example {\n expr incidr(client_ip(), '10.0.0.0/24')\n}").expect("ok");
    assert_eq!(v.progs.len(), 1);
    let v =
        parse("view example {\n expr name() == 'example.com.'\n expr name() == 'example2.com.'\n}")
            .expect("ok");
    assert_eq!(v.progs.len(), 2);
    let table = [
        (
            "view",
            "plugin/view: Corefile:1 - Error during parsing: Wrong argument count or unexpected line ending after 'view'",
        ),
        (
            "view example {\n expr invalid expression\n}",
            "plugin/view: unexpected token Identifier(\"expression\") (1:9)\n | invalid expression\n | ........^",
        ),
        (
            "view x {\n foo bar\n}\n",
            "plugin/view: Corefile:2 - Error during parsing: unknown property 'foo'",
        ),
        (
            "view a { }\nview b { }\n",
            "plugin/view: this plugin can only be used once per Server Block",
        ),
    ];
    for (input, want) in table {
        assert_eq!(parse(input).map(|_| ()), Err(want.to_owned()), "{input}");
    }
}

#[test]
fn corefile_tokens_join_as_coredns_joins_them() {
    // The Corefile splits `['A', 'AAAA']` into two tokens; CoreDNS joins them
    // with one space. Backslashes outside double quotes stay literal.
    let v = parse("view v {\n expr type() in ['A',   'AAAA']\n expr name() matches '^www\\\\.'\n}")
        .expect("ok");
    assert!(
        v.progs
            .iter()
            .all(|p| p.run(&Fixed) == Ok(Value::Bool(true)))
    );
}

#[test]
fn hostile_expressions_fail_cleanly() {
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    let nots = format!("{}true", "!".repeat(5000));
    let long_array = format!("[{}]", vec!["1"; 10000].join(","));
    for src in [
        deep.as_str(),
        nots.as_str(),
        "",
        ")",
        "(",
        "[",
        "]",
        ",",
        "?",
        ":",
        "1 ?",
        "1 ? 2",
        "a.",
        "name().x",
        "'\\u12'",
        "\"\\x4\"",
        "0x",
        "1e",
        "1..",
        "..1",
        "é",
        "name() == 'é",
        "not",
        "not in",
        "1 not 2",
        "incidr(",
        "incidr(,)",
        "[1,]",
        "[,1]",
        "`",
        "1 2",
        "-",
        "!",
        "nil ?? ",
    ] {
        let _ = Program::compile(src, ENV).map_err(|e| e.render(src));
    }
    assert!(Program::compile(&deep, ENV).is_err());
    assert!(Program::compile(&long_array, ENV).is_ok());
    // A huge range fails at run time instead of allocating without bound.
    assert!(run("1 in 0..100000000").is_err());
}
