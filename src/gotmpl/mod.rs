//! Go's `text/template` for the *template* plugin: the template language
//! (actions, trim markers, comments, pipelines, variables, `if`/`else
//! if`/`with`/`range`/`break`/`continue`, the built-in functions, `printf`'s
//! verbs) with Go's parse and execution error texts, over values that behave as
//! Go's do (a missing map key prints `<no value>`, `print` spaces operands as
//! `fmt.Sprint`).
//!
//! Not built: `define`, `template` and `block` (a template that uses them fails
//! at startup), complex numbers, and printing a whole DNS message.
//!
//! Go: `text/template` (`parse/lex.go`, `parse/parse.go`, `parse/node.go`,
//! `exec.go`, `funcs.go`), `fmt`.

mod exec;
mod parse;
mod printf;
#[cfg(test)]
mod tests;
mod value;

pub use exec::Func;
pub use value::{Object, Value, go_quote};

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    text: String,
    root: Vec<parse::Node>,
    funcs: &'static [Func],
}

impl std::fmt::Debug for Func {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Template {
    /// Go's `template.New(name).Funcs(funcs).Parse(text)`.
    pub fn parse(name: &str, text: &str, funcs: &'static [Func]) -> Result<Self, String> {
        let known = |n: &str| exec::BUILTINS.contains(&n) || funcs.iter().any(|f| f.name == n);
        let root = parse::parse(name, text, &known)?;
        Ok(Self {
            name: name.to_owned(),
            text: text.to_owned(),
            root,
            funcs,
        })
    }

    /// Go's `Template.Execute` into a string.
    pub fn execute(&self, data: &Value) -> Result<String, String> {
        let mut st = exec::State {
            name: &self.name,
            text: &self.text,
            funcs: self.funcs,
            vars: Vec::new(),
            out: String::new(),
            steps: 0,
            at: (0, String::new()),
        };
        exec::execute(&mut st, &self.root, data)?;
        Ok(st.out)
    }

    /// Go's `Tree.Root.String()`: the template printed back from its tree.
    pub fn tree_string(&self) -> String {
        parse::list_string(&self.root)
    }
}

/// Parses `text` as a template, prints its tree and runs it on sample data (the
/// fuzz target's body; errors are expected, panics are bugs).
pub fn fuzz_one(text: &str) {
    struct Sample;
    impl Object for Sample {
        fn type_name(&self) -> &'static str {
            "*template.templateData"
        }
        fn field(&self, name: &str) -> Option<Value> {
            Some(match name {
                "Name" => Value::str("a.example.org."),
                "Match" => Value::List(
                    "[]string",
                    std::rc::Rc::new(vec![Value::str("a.example.org.")]),
                ),
                "Group" => Value::Map(
                    "map[string]string",
                    std::rc::Rc::new(std::collections::BTreeMap::new()),
                    Box::new(Value::str("")),
                ),
                _ => return None,
            })
        }
        fn print(&self) -> Result<String, String> {
            Err("not printable".into())
        }
    }
    if let Ok(t) = Template::parse("answer", text, &[]) {
        let _ = t.tree_string();
        let _ = t.execute(&Value::Obj(std::rc::Rc::new(Sample)));
    }
}
