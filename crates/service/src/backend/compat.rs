//! Rewrites of public-API GraphQL documents for older servers.
//!
//! The SDK decides what an older server does not understand and asks the
//! service to drop variables, fragments and fields, or to rename fields,
//! before posting the document (`GraphQLRequest.omit_*`, `rename_fields`).
//! A document with none of these is forwarded byte for byte.

use std::collections::{HashMap, HashSet};

use graphql_parser::query::{
    Definition, Document, OperationDefinition, Selection, SelectionSet, Value,
};
use serde_json::Map;

/// What to change in a document.
#[derive(Debug)]
pub struct Rewrite<'a> {
    pub omit_variables: &'a [String],
    pub omit_fragments: &'a [String],
    pub omit_fields: &'a [String],
    pub rename_fields: &'a HashMap<String, String>,
}

impl Rewrite<'_> {
    fn is_empty(&self) -> bool {
        self.omit_variables.is_empty()
            && self.omit_fragments.is_empty()
            && self.omit_fields.is_empty()
            && self.rename_fields.is_empty()
    }

    /// Applies the rewrite to a document and its variables.
    pub fn apply(
        &self,
        query: &str,
        variables: &mut Map<String, serde_json::Value>,
    ) -> Result<String, String> {
        for name in self.omit_variables {
            variables.remove(name);
        }
        if self.is_empty() {
            return Ok(query.to_string());
        }
        let mut doc: Document<'_, String> = graphql_parser::parse_query(query)
            .map_err(|e| format!("the GraphQL document does not parse: {e}"))?;
        let vars: HashSet<&str> = self.omit_variables.iter().map(String::as_str).collect();
        let frags: HashSet<&str> = self.omit_fragments.iter().map(String::as_str).collect();
        let fields: HashSet<&str> = self.omit_fields.iter().map(String::as_str).collect();
        let ctx = Ctx {
            vars,
            frags,
            fields,
            rename: self.rename_fields,
        };
        doc.definitions.retain(|d| match d {
            Definition::Fragment(f) => !ctx.frags.contains(f.name.as_str()),
            Definition::Operation(_) => true,
        });
        for def in &mut doc.definitions {
            match def {
                Definition::Fragment(f) => ctx.selection_set(&mut f.selection_set),
                Definition::Operation(op) => match op {
                    OperationDefinition::SelectionSet(s) => ctx.selection_set(s),
                    OperationDefinition::Query(q) => {
                        q.variable_definitions
                            .retain(|v| !ctx.vars.contains(v.name.as_str()));
                        ctx.selection_set(&mut q.selection_set);
                    }
                    OperationDefinition::Mutation(m) => {
                        m.variable_definitions
                            .retain(|v| !ctx.vars.contains(v.name.as_str()));
                        ctx.selection_set(&mut m.selection_set);
                    }
                    OperationDefinition::Subscription(s) => {
                        s.variable_definitions
                            .retain(|v| !ctx.vars.contains(v.name.as_str()));
                        ctx.selection_set(&mut s.selection_set);
                    }
                },
            }
        }
        Ok(doc.to_string())
    }
}

struct Ctx<'a> {
    vars: HashSet<&'a str>,
    frags: HashSet<&'a str>,
    fields: HashSet<&'a str>,
    rename: &'a HashMap<String, String>,
}

impl Ctx<'_> {
    fn selection_set(&self, set: &mut SelectionSet<'_, String>) {
        set.items.retain(|s| match s {
            Selection::Field(f) => !self.fields.contains(f.name.as_str()),
            Selection::FragmentSpread(f) => !self.frags.contains(f.fragment_name.as_str()),
            Selection::InlineFragment(_) => true,
        });
        for item in &mut set.items {
            match item {
                Selection::Field(f) => {
                    if let Some(new) = self.rename.get(&f.name) {
                        f.name = new.clone();
                    }
                    f.arguments.retain(|(_, v)| !self.uses_omitted(v));
                    self.selection_set(&mut f.selection_set);
                }
                Selection::InlineFragment(f) => self.selection_set(&mut f.selection_set),
                Selection::FragmentSpread(_) => {}
            }
        }
    }

    /// An argument whose value is an omitted variable goes too; inside
    /// input objects only the member goes.
    fn uses_omitted(&self, v: &Value<'_, String>) -> bool {
        match v {
            Value::Variable(name) => self.vars.contains(name.as_str()),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omits_and_renames() {
        let rename = HashMap::from([("oldName".to_string(), "newName".to_string())]);
        let rw = Rewrite {
            omit_variables: &["tags".to_string()],
            omit_fragments: &["Extra".to_string()],
            omit_fields: &["ttl".to_string()],
            rename_fields: &rename,
        };
        let mut vars = Map::new();
        vars.insert("id".into(), "1".into());
        vars.insert("tags".into(), serde_json::json!(["a"]));
        let out = rw
            .apply(
                "query Q($id: ID!, $tags: [String]) { artifact(id: $id, tags: $tags) { id ttl oldName ...Extra } } fragment Extra on Artifact { size }",
                &mut vars,
            )
            .unwrap();
        assert!(!out.contains("tags"), "{out}");
        assert!(!out.contains("ttl") && !out.contains("Extra"), "{out}");
        assert!(
            out.contains("newName") && out.contains("artifact(id: $id)"),
            "{out}"
        );
        assert!(!vars.contains_key("tags"));
    }

    #[test]
    fn untouched_documents_stay_byte_for_byte() {
        let rw = Rewrite {
            omit_variables: &[],
            omit_fragments: &[],
            omit_fields: &[],
            rename_fields: &HashMap::new(),
        };
        let q = "query   Viewer { viewer { id } }";
        assert_eq!(rw.apply(q, &mut Map::new()).unwrap(), q);
    }
}
