//! Template → output and template → error tables, the outputs and error texts
//! as Go 1.24's `text/template` gives them.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::*;

struct Data;

impl Object for Data {
    fn type_name(&self) -> &'static str {
        "*template.templateData"
    }
    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "Name" => Value::str("ip-10-1-2-3.example.org."),
            "Zone" => Value::str("example.org."),
            "Empty" => Value::str(""),
            "Match" => Value::List(
                "[]string",
                Rc::new(vec![
                    Value::str("ip-10-1-2-3.example.org."),
                    Value::str("10"),
                    Value::str("1"),
                ]),
            ),
            "Group" => {
                let mut m = BTreeMap::new();
                m.insert("a".to_owned(), Value::str("10"));
                m.insert("b".to_owned(), Value::str("1"));
                Value::Map("map[string]string", Rc::new(m), Box::new(Value::str("")))
            }
            "Num" => Value::Uint(28, "uint16"),
            _ => return None,
        })
    }
    fn method(&self, name: &str) -> Option<usize> {
        (name == "Meta").then_some(1)
    }
    fn call(&self, _name: &str, args: &[Value]) -> Result<Value, String> {
        match args {
            [Value::Str(s)] if &**s == "kubernetes/client-namespace" => Ok(Value::str("ns1")),
            [Value::Str(_)] => Ok(Value::str("")),
            [other] => Err(format!(
                "wrong type for value; expected string; got {}",
                other.type_name()
            )),
            _ => Err("args".into()),
        }
    }
    fn print(&self) -> Result<String, String> {
        Err("printing the template's data is not supported".into())
    }
    fn unexported(&self, name: &str) -> bool {
        name == "md"
    }
}

fn parse_uint(args: &[Value]) -> Result<Value, String> {
    match args {
        [Value::Str(s), Value::Int(base, _), Value::Int(_, _)] => {
            u64::from_str_radix(s, u32::try_from(*base).unwrap_or(10))
                .map(|v| Value::Uint(v, "uint64"))
                .map_err(|_| format!("strconv.ParseUint: parsing {}: invalid syntax", go_quote(s)))
        }
        _ => Err("bad args".into()),
    }
}

static FUNCS: [Func; 1] = [Func {
    name: "parseInt",
    params: &["string", "int", "int"],
    call: parse_uint,
}];

fn run(t: &str) -> Result<String, String> {
    let tp = Template::parse("answer", t, &FUNCS)?;
    tp.execute(&Value::Obj(Rc::new(Data)))
}

#[test]
fn outputs() {
    let cases: &[(&str, &str)] = &[
        (
            "{{ .Name }} 60 IN A 127.0.0.1",
            "ip-10-1-2-3.example.org. 60 IN A 127.0.0.1",
        ),
        ("{{ index .Match 1 }}.{{ .Group.b }}", "10.1"),
        ("{{ .Group.missing }}", "<no value>"),
        ("{{ index .Group \"missing\" }}|", "|"),
        ("{{ .Group }}", "map[a:10 b:1]"),
        ("{{ .Match }}", "[ip-10-1-2-3.example.org. 10 1]"),
        ("{{ len .Match }} {{ len .Name }}", "3 24"),
        ("{{ .Num }}", "28"),
        ("{{ parseInt .Group.a 16 8 }}", "16"),
        (
            "{{ printf \"%03d-%x-%s-%q\" 7 255 .Zone \"a\" }}",
            "007-ff-example.org.-\"a\"",
        ),
        ("{{ printf \"%d\" }}", "%!d(MISSING)"),
        ("{{ printf \"%d\" \"x\" }}", "%!d(string=x)"),
        ("{{ printf \"x\" 1 }}", "x%!(EXTRA int=1)"),
        (
            "{{ printf \"%5s|%-5s|%.2s\" \"ab\" \"ab\" \"abc\" }}",
            "   ab|ab   |ab",
        ),
        (
            "{{ printf \"%v %v %v\" 1.5 100000000.0 0.00001 }}",
            "1.5 1e+08 1e-05",
        ),
        ("{{ print 1 2 \"a\" 3 }}", "1 2a3"),
        ("{{ println 1 \"a\" }}", "1 a\n"),
        (
            "{{ if eq .Zone \"example.org.\" }}yes{{ else }}no{{ end }}",
            "yes",
        ),
        (
            "{{ if eq .Zone \"x\" \"example.org.\" }}yes{{ end }}",
            "yes",
        ),
        (
            "{{ if ne .Num 28 }}a{{ else if eq .Num 28 }}b{{ end }}",
            "b",
        ),
        (
            "{{ if lt 1 2 }}lt{{ end }}{{ if ge 2 2 }}ge{{ end }}",
            "ltge",
        ),
        ("{{ if .Empty }}a{{ else }}b{{ end }}", "b"),
        ("{{ with .Group.a }}{{ . }}{{ end }}", "10"),
        (
            "{{ with .Empty }}x{{ else with .Zone }}{{ . }}{{ end }}",
            "example.org.",
        ),
        (
            "{{ range $i, $m := .Match }}{{ $i }}={{ $m }};{{ end }}",
            "0=ip-10-1-2-3.example.org.;1=10;2=1;",
        ),
        (
            "{{ range .Match }}{{ if eq . \"10\" }}{{ break }}{{ end }}{{ . }};{{ end }}",
            "ip-10-1-2-3.example.org.;",
        ),
        (
            "{{ range .Match }}{{ if eq . \"10\" }}{{ continue }}{{ end }}{{ . }};{{ end }}",
            "ip-10-1-2-3.example.org.;1;",
        ),
        (
            "{{ range $k, $v := .Group }}{{ $k }}{{ $v }}{{ end }}",
            "a10b1",
        ),
        ("{{ range .Group.missing }}x{{ else }}none{{ end }}", "none"),
        ("{{ $x := .Zone }}{{ $x }}", "example.org."),
        ("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", "2"),
        ("{{ .Zone | printf \"%s!\" }}", "example.org.!"),
        ("{{ and 1 0 2 }} {{ or 0 \"\" 3 }} {{ not 0 }}", "0 3 true"),
        ("{{ (index .Match 1) }}", "10"),
        ("{{ slice .Zone 0 7 }}", "example"),
        ("{{ index .Zone 0 }}", "101"),
        ("a  {{- .Zone -}}  b", "aexample.org.b"),
        ("{{/* a comment */}}x", "x"),
        ("x {{- /* trimmed */ -}} y", "xy"),
        ("{{ .Meta \"kubernetes/client-namespace\" }}", "ns1"),
        (
            "{{ html \"<a&b>\" }} {{ urlquery \"a b&c\" }} {{ js \"a'b\" }}",
            "&lt;a&amp;b&gt; a+b%26c a\\'b",
        ),
        ("{{ 'a' }} {{ 0x10 }} {{ -3 }} {{ 1e3 }}", "97 16 -3 1000"),
        ("{{ `raw\\n` }}", "raw\\n"),
        ("{{ \"tab\\there\" }}", "tab\there"),
        ("{{ true }} {{ false }}", "true false"),
        // A missing key is unequal to anything else, false, and `<no value>` to the escapers.
        ("{{ if eq .Group.x \"y\" }}a{{ else }}b{{ end }}", "b"),
        ("{{ not .Group.x }} {{ eq .Group.x .Group.y }}", "true true"),
        ("{{ html .Group.x }}", "&lt;no value&gt;"),
        ("{{ range 3 }}{{ . }}{{ end }}", "012"),
        ("{{ range $i := 2 }}{{ $i }}{{ end }}", "01"),
        (
            "{{ printf \"%99999999999d\" 1 }}",
            "%!(NOVERB)%!(EXTRA int=1)",
        ),
        (
            "{{ printf \"%*d|%.*d\" 2000000 1 3 7 }}",
            "%!(BADWIDTH)1|007",
        ),
        ("{{ printf \"%.3d\" 7 }}", "007"),
        ("{{ $x := .Zone }}{{ $x := $x }}{{ $x }}", "example.org."),
    ];
    for (t, want) in cases {
        assert_eq!(run(t).as_deref(), Ok(*want), "{t}");
    }
}

#[test]
fn errors() {
    let cases: &[(&str, &str)] = &[
        ("{{ .Name ", "template: answer:1: unclosed action"),
        (
            "{{ foo }}",
            "template: answer:1: function \"foo\" not defined",
        ),
        ("{{ $x }}", "template: answer:1: undefined variable \"$x\""),
        ("{{ if .Name }}x", "template: answer:1: unexpected EOF"),
        ("{{ end }}", "template: answer:1: unexpected {{end}}"),
        ("{{ else }}", "template: answer:1: unexpected {{else}}"),
        ("{{ }}", "template: answer:1: missing value for command"),
        (
            "{{ break }}",
            "template: answer:1: {{break}} outside {{range}}",
        ),
        (
            "{{ \"abc }}",
            "template: answer:1: unterminated quoted string",
        ),
        ("{{ # }}", "template: answer:1: unexpected \"#\" in command"),
        (
            "{{ .Name }",
            "template: answer:1: unexpected \"}\" in operand",
        ),
        ("{{ .Name}", "template: answer:1: bad character U+007D '}'"),
        (
            "{{ .Name | x }}{{",
            "template: answer:1: function \"x\" not defined",
        ),
        (
            "{{ .Match[1] }}",
            "template: answer:1: bad character U+005B '['",
        ),
        ("{{ 1é }}", "template: answer:1: bad number syntax: \"1é\""),
        (
            "{{ .Name. }}",
            "template: answer:1: unexpected <.> in operand",
        ),
        ("{{ \"\\d\" }}", "template: answer:1: invalid syntax"),
        (
            "{{ range .Match }}{{ else }}{{ break }}{{ end }}",
            "template: answer:1: {{break}} outside {{range}}",
        ),
        (
            "{{ break x }}",
            "template: answer:1: unexpected \"x\" in {{break}}",
        ),
        (
            "{{ range $i, $e := 3 }}{{ end }}",
            "template: answer:1:19: executing \"answer\" at <3>: can't use 3 to iterate over more than one variable",
        ),
        (
            "{{ range 200000 }}{{ end }}",
            "template: answer:1:9: executing \"answer\" at <200000>: more than 100000 range iterations (a limit of ringdns)",
        ),
        (
            "{{ define \"x\" }}{{ end }}",
            "template: answer:1: {{define}} is not supported by ringdns's templates",
        ),
        (
            "{{/* x */ .Name }}",
            "template: answer:1: comment ends before closing delimiter",
        ),
        (
            "{{ .Name | \"x\" }}",
            "template: answer:1: non executable command in pipeline stage 2",
        ),
        (
            "{{ .Nope }}",
            "template: answer:1:3: executing \"answer\" at <.Nope>: can't evaluate field Nope in type *template.templateData",
        ),
        (
            "{{ .md }}",
            "template: answer:1:3: executing \"answer\" at <.md>: md is an unexported field of struct type *template.templateData",
        ),
        (
            "{{ index .Match 5 }}",
            "template: answer:1:3: executing \"answer\" at <index .Match 5>: error calling index: index out of range: 5",
        ),
        (
            "{{ parseInt .Name 10 64 }}",
            "template: answer:1:3: executing \"answer\" at <parseInt .Name 10 64>: error calling parseInt: strconv.ParseUint: parsing \"ip-10-1-2-3.example.org.\": invalid syntax",
        ),
        (
            "{{ parseInt .Name }}",
            "template: answer:1:3: executing \"answer\" at <parseInt>: wrong number of args for parseInt: want 3 got 1",
        ),
        (
            "{{ parseInt 1 2 3 }}",
            "template: answer:1:12: executing \"answer\" at <1>: expected string; found 1",
        ),
        (
            "{{ .Zone.Foo }}",
            "template: answer:1:3: executing \"answer\" at <.Zone.Foo>: can't evaluate field Foo in type string",
        ),
        (
            "{{ .Meta }}",
            "template: answer:1:3: executing \"answer\" at <.Meta>: wrong number of args for Meta: want 1 got 0",
        ),
        (
            "{{ lt .Zone 1 }}",
            "template: answer:1:3: executing \"answer\" at <lt .Zone 1>: error calling lt: incompatible types for comparison: string and int",
        ),
        (
            "{{ index .Match 3 }}",
            "template: answer:1:3: executing \"answer\" at <index .Match 3>: error calling index: reflect: slice index out of range",
        ),
        (
            "{{ parseInt .Group.b 16 }}",
            "template: answer:1:3: executing \"answer\" at <parseInt>: wrong number of args for parseInt: want 3 got 2",
        ),
        (
            "{{ nil }}",
            "template: answer:1:3: executing \"answer\" at <nil>: nil is not a command",
        ),
    ];
    for (t, want) in cases {
        assert_eq!(run(t), Err((*want).to_owned()), "{t}");
    }
}

#[test]
fn tree_strings() {
    let cases: &[(&str, &str)] = &[
        (
            "{{ .Name }} 60 IN A {{ .Group.a }}",
            "{{.Name}} 60 IN A {{.Group.a}}",
        ),
        (
            "{{ index .Match 1 | printf \"%s\" }}",
            "{{index .Match 1 | printf \"%s\"}}",
        ),
        (
            "{{ if eq .Zone `x` }}a{{ else if .Name }}b{{ end }}",
            "{{if eq .Zone `x`}}a{{else}}{{if .Name}}b{{end}}{{end}}",
        ),
        (
            "{{ range $i, $e := .Match }}{{ $e }}{{ end }}",
            "{{range $i, $e := .Match}}{{$e}}{{end}}",
        ),
        ("{{ (len .Match) }}", "{{(len .Match)}}"),
        ("a {{- /* c */ -}} b", "ab"),
    ];
    for (t, want) in cases {
        let tp = Template::parse("answer", t, &FUNCS).expect(t);
        assert_eq!(tp.tree_string(), *want, "{t}");
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(101), ")".repeat(101));
    assert_eq!(
        run(&deep),
        Err("template: answer:1: max expression depth exceeded".to_owned())
    );
    let ok = format!("{{{{ {}1{} }}}}", "(".repeat(50), ")".repeat(50));
    assert_eq!(run(&ok).as_deref(), Ok("1"));
    let ifs = format!("{}x{}", "{{ if 1 }}".repeat(101), "{{ end }}".repeat(101));
    assert_eq!(
        run(&ifs),
        Err("template: answer:1: max expression depth exceeded".to_owned())
    );
}

/// Random templates from the language's own pieces (a fixed seed, bounded
/// count): parsing and running them returns a result or an error, never a
/// panic. `tests/fuzz` has the open-ended version.
#[test]
fn random_templates_never_panic() {
    const PIECES: &[&str] = &[
        "{{",
        "}}",
        "{{- ",
        " -}}",
        " ",
        ".",
        ".Name",
        ".Match",
        ".Group",
        ".Group.a",
        ".Meta",
        "$",
        "$x",
        ":=",
        "=",
        "|",
        "(",
        ")",
        "\"",
        "\"a\"",
        "`r`",
        "'c'",
        "1",
        "-1",
        "1.5e3",
        "0x1F",
        "é",
        "index",
        "printf",
        "\"%d\"",
        "\"%*.*s\"",
        "if",
        "else",
        "end",
        "range",
        "with",
        "break",
        "continue",
        "nil",
        "true",
        "/*",
        "*/",
        ",",
        "\\",
        "len",
        "slice",
        "eq",
        "lt",
        "and",
        "not",
        "parseInt",
        "print",
        "}",
        "{",
        "\n",
        "%",
        "9999999",
        "define",
        "html",
        "js",
        "urlquery",
        "call",
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    let mut parsed = 0;
    for _ in 0..200_000 {
        let n = rng.usize(1..16);
        let mut t = String::new();
        for _ in 0..n {
            t.push_str(PIECES[rng.usize(..PIECES.len())]);
        }
        let r = std::panic::catch_unwind(|| {
            if let Ok(tp) = Template::parse("answer", &t, &FUNCS) {
                let _ = tp.tree_string();
                let _ = tp.execute(&Value::Obj(Rc::new(Data)));
                true
            } else {
                false
            }
        });
        match r {
            Ok(true) => parsed += 1,
            Ok(false) => {}
            Err(_) => panic!("template {t:?} panicked"),
        }
    }
    assert!(parsed > 100, "only {parsed} random templates parsed");
}
