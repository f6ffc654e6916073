//! A plan for people (text) and for deployment: a CloudFormation template
//! (JSON, which cfn-lint reads as it reads YAML) and a Terraform snippet.
//! Proposals of unknown compute have no trust policy and are left out of
//! both deployment formats (the plan's warnings say so).

use super::{Compute, PolicyDocument, Proposal, RolePlan, Statement, GITHUB_OIDC};
use serde_json::{json, Map, Value};
use std::fmt::Write;

/// The name of each role's inline policy.
const POLICY_NAME: &str = "rekey-seen-actions";

impl RolePlan {
    /// For people: each proposal with its evidence, consumers, trust,
    /// permissions and gaps, then the warnings.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let count = match self.proposals.len() {
            1 => "1 proposal".to_owned(),
            n => format!("{n} proposals"),
        };
        let _ = writeln!(out, "Roles to replace the access keys of IAM user {} in account {}: {count}", self.user_name, self.account_id);
        for (i, p) in self.proposals.iter().enumerate() {
            let role = p.role_name.as_deref().map(|r| format!(": role {r}")).unwrap_or_default();
            let _ = writeln!(out, "\n{}. {}, {} confidence{role}", i + 1, p.compute, p.confidence.as_str());
            for e in &p.evidence {
                let _ = writeln!(out, "   why: {e}");
            }
            let _ = writeln!(out, "   consumers:");
            for c in &p.consumers {
                let (ip, agent) = if c.source_ip.is_empty() && c.user_agent.is_empty() { ("(unreadable)", "") } else { (c.source_ip.as_str(), c.user_agent.as_str()) };
                let calls = if c.calls == 1 { "1 call".to_owned() } else { format!("{} calls", c.calls) };
                let _ = writeln!(out, "     {ip}  {agent}  {calls}, last {}", c.last_seen);
            }
            match &p.trust_policy {
                Some(trust) => {
                    for s in &trust.statement {
                        let _ = writeln!(out, "   trust: {}", trust_line(s));
                    }
                }
                None => {
                    let _ = writeln!(out, "   trust: none proposed (compute unknown)");
                }
            }
            if p.permissions_policy.statement.is_empty() {
                let _ = writeln!(out, "   permissions, as seen: none");
            } else {
                let _ = writeln!(out, "   permissions, as seen:");
                for s in &p.permissions_policy.statement {
                    let on = s.resource.as_deref().unwrap_or_default().join(", ");
                    for a in &s.action {
                        let _ = writeln!(out, "     {a} on {on}");
                    }
                }
            }
            if !p.unmapped_events.is_empty() {
                let list: Vec<String> = p.unmapped_events.iter().map(|u| format!("{} {} ({})", u.event_source, u.event_name, u.calls)).collect();
                let _ = writeln!(out, "   events that map to no IAM action: {}", list.join(", "));
            }
            if !p.allowed_not_seen.is_empty() {
                let _ = writeln!(out, "   allowed today, not seen:");
                for line in wrap(&p.allowed_not_seen, 90) {
                    let _ = writeln!(out, "     {line}");
                }
            }
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "\nWarnings:");
            for w in &self.warnings {
                let _ = writeln!(out, "  - {w}");
            }
        }
        out
    }

    /// A CloudFormation template: one `AWS::IAM::Role` per proposal with a
    /// trust policy (and an instance profile for EC2); for GitHub Actions,
    /// the account's OIDC provider, or a new one when the parameter
    /// `CreateGitHubOidcProvider` is `true`.
    pub fn to_cloudformation(&self) -> String {
        let mut resources = Map::new();
        let mut outputs = Map::new();
        let github = self.proposals.iter().any(|p| p.compute == Compute::GithubActions);
        for p in self.deployable() {
            let (Some(trust), Some(role_name)) = (&p.trust_policy, &p.role_name) else { continue };
            let id = format!("{}Role", camel(&p.slug));
            let mut trust = to_value(trust);
            if p.compute == Compute::GithubActions {
                // The provider this stack creates, or the account's own.
                trust["Statement"][0]["Principal"]["Federated"] = json!({"Fn::If": ["CreateGitHubOidc",
                    {"Fn::GetAtt": ["GitHubOidcProvider", "Arn"]},
                    {"Fn::Sub": format!("arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:oidc-provider/{GITHUB_OIDC}")}]});
            }
            let mut properties = json!({
                "RoleName": role_name,
                "Description": description(self, p),
                "AssumeRolePolicyDocument": trust,
            });
            if !p.permissions_policy.statement.is_empty() {
                properties["Policies"] = json!([{"PolicyName": POLICY_NAME, "PolicyDocument": to_value(&p.permissions_policy)}]);
            }
            resources.insert(id.clone(), json!({"Type": "AWS::IAM::Role", "Properties": properties}));
            outputs.insert(format!("{id}Arn"), json!({"Value": {"Fn::GetAtt": [id, "Arn"]}}));
            if p.compute == Compute::Ec2 {
                resources.insert(
                    format!("{}InstanceProfile", camel(&p.slug)),
                    json!({"Type": "AWS::IAM::InstanceProfile", "Properties": {"InstanceProfileName": role_name, "Roles": [{"Ref": id}]}}),
                );
            }
        }
        let mut template = json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": format!("Roles to replace the access keys of IAM user {} (rekey role-plan)", self.user_name),
        });
        if github {
            template["Parameters"] = json!({"CreateGitHubOidcProvider": {
                "Type": "String", "AllowedValues": ["true", "false"], "Default": "false",
                "Description": format!("true to create the account's OIDC provider for {GITHUB_OIDC}, false when it exists"),
            }});
            template["Conditions"] = json!({"CreateGitHubOidc": {"Fn::Equals": [{"Ref": "CreateGitHubOidcProvider"}, "true"]}});
            resources.insert(
                "GitHubOidcProvider".into(),
                json!({"Type": "AWS::IAM::OIDCProvider", "Condition": "CreateGitHubOidc",
                       "Properties": {"Url": format!("https://{GITHUB_OIDC}"), "ClientIdList": ["sts.amazonaws.com"]}}),
            );
        }
        template["Resources"] = Value::Object(resources);
        if !outputs.is_empty() {
            template["Outputs"] = Value::Object(outputs);
        }
        serde_json::to_string_pretty(&template).unwrap_or_default() + "\n"
    }

    /// A Terraform snippet: `aws_iam_role` and `aws_iam_role_policy` per
    /// proposal with a trust policy (and `aws_iam_instance_profile` for
    /// EC2); for GitHub Actions an OIDC provider made when the variable
    /// `create_github_oidc_provider` is true. The warnings come first, as
    /// comments.
    pub fn to_terraform(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Roles to replace the access keys of IAM user {} in account {} (rekey role-plan).", self.user_name, self.account_id);
        for w in &self.warnings {
            let _ = writeln!(out, "# - {}", w.replace('\n', " "));
        }
        if self.proposals.iter().any(|p| p.compute == Compute::GithubActions) {
            let _ = write!(
                out,
                r#"
variable "create_github_oidc_provider" {{
  description = "true to create the account's OIDC provider for {GITHUB_OIDC}, false when it exists"
  type        = bool
  default     = false
}}

resource "aws_iam_openid_connect_provider" "github" {{
  count          = var.create_github_oidc_provider ? 1 : 0
  url            = "https://{GITHUB_OIDC}"
  client_id_list = ["sts.amazonaws.com"]
}}
"#
            );
        }
        for p in self.deployable() {
            let (Some(trust), Some(role_name)) = (&p.trust_policy, &p.role_name) else { continue };
            let name = p.slug.replace('-', "_");
            let _ = writeln!(out, "\nresource \"aws_iam_role\" \"{name}\" {{");
            let _ = writeln!(out, "  name               = {}", hcl_string(role_name));
            let _ = writeln!(out, "  description        = {}", hcl_string(&description(self, p)));
            let _ = writeln!(out, "  assume_role_policy = jsonencode({})", hcl(&to_value(trust), 1));
            if p.compute == Compute::GithubActions {
                let _ = writeln!(out, "  depends_on         = [aws_iam_openid_connect_provider.github]");
            }
            let _ = writeln!(out, "}}");
            if !p.permissions_policy.statement.is_empty() {
                let _ = writeln!(out, "\nresource \"aws_iam_role_policy\" \"{name}\" {{");
                let _ = writeln!(out, "  name   = {}", hcl_string(POLICY_NAME));
                let _ = writeln!(out, "  role   = aws_iam_role.{name}.id");
                let _ = writeln!(out, "  policy = jsonencode({})", hcl(&to_value(&p.permissions_policy), 1));
                let _ = writeln!(out, "}}");
            }
            if p.compute == Compute::Ec2 {
                let _ = writeln!(out, "\nresource \"aws_iam_instance_profile\" \"{name}\" {{");
                let _ = writeln!(out, "  name = {}", hcl_string(role_name));
                let _ = writeln!(out, "  role = aws_iam_role.{name}.name");
                let _ = writeln!(out, "}}");
            }
        }
        out
    }

    /// The proposals that get a role: those with a trust policy.
    fn deployable(&self) -> impl Iterator<Item = &Proposal> {
        self.proposals.iter().filter(|p| p.trust_policy.is_some())
    }
}

/// `Service lambda.amazonaws.com may sts:AssumeRole when ...`.
fn trust_line(s: &Statement) -> String {
    let who: Vec<String> = s.principal.iter().flatten().map(|(kind, id)| format!("{kind} {id}")).collect();
    let conditions: Vec<String> =
        s.condition.iter().flat_map(|(operator, pairs)| pairs.iter().map(move |(key, value)| format!("{operator} {key} = {value}"))).collect();
    let mut line = format!("{} may {}", who.join(", "), s.action.join(", "));
    if !conditions.is_empty() {
        let _ = write!(line, " when {}", conditions.join(" and "));
    }
    line
}

/// `items` joined by ", " into lines of about `width` characters.
fn wrap(items: &[String], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for item in items {
        match lines.last_mut() {
            Some(line) if line.len() + 2 + item.len() <= width => {
                line.push_str(", ");
                line.push_str(item);
            }
            _ => lines.push(item.clone()),
        }
    }
    lines
}

/// The role's description: printable ASCII, as IAM requires, at most 1000.
fn description(plan: &RolePlan, p: &Proposal) -> String {
    let text = format!("Replaces the access keys of IAM user {} for its {} consumers (rekey role-plan)", plan.user_name, p.compute);
    text.chars().filter(|c| (' '..='~').contains(c)).take(1000).collect()
}

fn to_value(policy: &PolicyDocument) -> Value {
    serde_json::to_value(policy).unwrap_or(Value::Null)
}

/// `github-actions-2` → `GithubActions2`: a CloudFormation logical ID part.
fn camel(slug: &str) -> String {
    slug.split('-')
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// A JSON value as an HCL expression (for `jsonencode`), indented by
/// `depth` levels.
fn hcl(value: &Value, depth: usize) -> String {
    let pad = "  ".repeat(depth + 1);
    let end = "  ".repeat(depth);
    match value {
        Value::Object(map) if map.is_empty() => "{}".into(),
        Value::Object(map) => {
            let items: Vec<String> = map.iter().map(|(k, v)| format!("{pad}{} = {}", hcl_string(k), hcl(v, depth + 1))).collect();
            format!("{{\n{}\n{end}}}", items.join("\n"))
        }
        Value::Array(items) if items.is_empty() => "[]".into(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|v| format!("{pad}{},", hcl(v, depth + 1))).collect();
            format!("[\n{}\n{end}]", items.join("\n"))
        }
        Value::String(s) => hcl_string(s),
        other => other.to_string(),
    }
}

/// A quoted HCL string: JSON's escapes, and `${` / `%{` escaped so that
/// Terraform reads them as text, not as templates (IAM's own `${aws:username}`).
fn hcl_string(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted.replace("${", "$${").replace("%{", "%%{")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_strings_escape_templates() {
        assert_eq!(hcl_string("arn:aws:s3:::b/${aws:username}"), r#""arn:aws:s3:::b/$${aws:username}""#);
        assert_eq!(hcl_string("a\"b"), r#""a\"b""#);
        assert_eq!(hcl(&json!({"A": ["x"], "B": {}}), 0), "{\n  \"A\" = [\n    \"x\",\n  ]\n  \"B\" = {}\n}");
        assert_eq!(camel("github-actions-2"), "GithubActions2");
    }
}
