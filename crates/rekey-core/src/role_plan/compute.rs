//! Where a consumer runs, told from what CloudTrail shows of it: its user
//! agent (the SDKs add `exec-env/...` from `AWS_EXECUTION_ENV`), its source
//! (an address, or an AWS service's name) and the VPC endpoint it came
//! through. Each verdict says how sure it is and why; "unknown" is a
//! verdict too.

use serde::Serialize;
use std::fmt;
use std::net::IpAddr;

/// The compute a consumer runs on, which decides the role's trust policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compute {
    Lambda,
    Ecs,
    Ec2,
    Codebuild,
    GithubActions,
    Eks,
    OutsideAws,
    Unknown,
}

impl Compute {
    pub fn as_str(self) -> &'static str {
        match self {
            Compute::Lambda => "lambda",
            Compute::Ecs => "ecs",
            Compute::Ec2 => "ec2",
            Compute::Codebuild => "codebuild",
            Compute::GithubActions => "github-actions",
            Compute::Eks => "eks",
            Compute::OutsideAws => "outside-aws",
            Compute::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Compute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure a verdict is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// A GitHub repository named by a user agent, and its branch if named too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GitHubRef {
    /// `OWNER/REPO`.
    pub repository: String,
    pub branch: Option<String>,
}

/// What rekey concludes about one consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub compute: Compute,
    pub confidence: Confidence,
    pub evidence: Vec<String>,
    /// For GitHub Actions: the repository, when the user agent shows it.
    pub github: Option<GitHubRef>,
}

/// What CloudTrail shows of one consumer.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub source_ip: &'a str,
    pub user_agent: &'a str,
    /// False when the consumer is events whose record could not be read.
    pub readable: bool,
    /// A VPC endpoint its calls came through, if any.
    pub vpc_endpoint: Option<&'a str>,
}

fn verdict(compute: Compute, confidence: Confidence, evidence: Vec<String>) -> Verdict {
    Verdict { compute, confidence, evidence, github: None }
}

/// The first rule that fits wins, most specific first: an explicit
/// `exec-env`, an AWS service as the source, GitHub Actions and Kubernetes
/// (whose runners and nodes are often EC2 instances with private
/// addresses), then the address itself.
pub fn classify(seen: Seen<'_>) -> Verdict {
    use Compute::*;
    use Confidence::*;
    let (ip, agent) = (seen.source_ip, seen.user_agent);
    if !seen.readable {
        return verdict(Unknown, Low, vec!["CloudTrail records that could not be read: neither source nor user agent is known".into()]);
    }
    if let Some(env) = agent.split_whitespace().find_map(|t| t.strip_prefix("exec-env/")) {
        let why = || vec![format!("user agent exec-env/{env}")];
        if env.starts_with("AWS_Lambda") {
            return verdict(Lambda, High, why());
        }
        if env.starts_with("AWS_ECS") {
            return verdict(Ecs, High, why());
        }
        if env.to_ascii_lowercase().contains("codebuild") {
            return verdict(Codebuild, High, why());
        }
        if env == "EC2" || env == "AWS_EC2" {
            return verdict(Ec2, High, why());
        }
        // Glue, CloudShell, SageMaker...: AWS compute without a role kind here.
        let mut evidence = why();
        evidence.push(format!("{env} is AWS compute that rekey proposes no trust policy for: give it its own service role"));
        return verdict(Unknown, Low, evidence);
    }
    if ip == "AWS Internal" {
        return verdict(Unknown, Low, vec!["source AWS Internal: an AWS service calling on behalf of the key's user, who is seen elsewhere".into()]);
    }
    if let Some(service) = ip.strip_suffix(".amazonaws.com") {
        let why = vec![format!("source {ip}: the AWS service called with the key")];
        return match service {
            "lambda" => verdict(Lambda, Medium, why),
            "ecs" | "ecs-tasks" => verdict(Ecs, Medium, why),
            "codebuild" => verdict(Codebuild, Medium, why),
            "ec2" => verdict(Ec2, Medium, why),
            _ => verdict(Unknown, Low, vec![format!("source {ip}: an AWS service calling on behalf of the key's user, who is seen elsewhere")]),
        };
    }
    if let Some(hint) = github_hint(agent) {
        let github = github_ref(agent);
        let mut evidence = vec![format!("user agent names {hint}")];
        match &github {
            Some(GitHubRef { repository, branch: Some(branch) }) => evidence.push(format!("user agent names repository {repository}, branch {branch}")),
            Some(GitHubRef { repository, branch: None }) => evidence.push(format!("user agent names repository {repository}, no branch")),
            None => evidence.push("no repository in the user agent".into()),
        }
        return Verdict { compute: GithubActions, confidence: High, evidence, github };
    }
    if let Some(hint) = kubernetes_hint(agent) {
        return verdict(Eks, Medium, vec![format!("user agent names {hint}, which runs in Kubernetes (taken as EKS)")]);
    }
    let address: Option<IpAddr> = ip.parse().ok();
    let private = address.is_some_and(is_private);
    let lower = agent.to_ascii_lowercase();
    let amazon_linux = lower.contains("amzn");
    // An SDK that read the instance metadata service (for its region, say).
    let metadata = lower.contains("imds");
    let mut evidence = Vec::new();
    if private {
        evidence.push(format!("source {ip} is a private address: the calls came through a VPC endpoint, from inside a VPC"));
    }
    if let Some(endpoint) = seen.vpc_endpoint {
        evidence.push(format!("called through VPC endpoint {endpoint}"));
    }
    if amazon_linux {
        evidence.push("user agent shows Amazon Linux (amzn)".into());
    }
    if metadata {
        evidence.push("user agent mentions the EC2 instance metadata service (imds)".into());
    }
    let in_vpc = private || seen.vpc_endpoint.is_some();
    let on_ec2 = amazon_linux || metadata;
    if in_vpc || on_ec2 {
        return verdict(Ec2, if in_vpc && on_ec2 { High } else { Medium }, evidence);
    }
    if address.is_some() {
        if let Some(desktop) = desktop_hint(agent) {
            return verdict(OutsideAws, High, vec![format!("source {ip} is a public address"), format!("user agent shows {desktop}, a workstation")]);
        }
        return verdict(
            OutsideAws,
            Medium,
            vec![format!("source {ip} is a public address and the user agent shows no AWS compute (EC2 without a VPC endpoint would look the same)")],
        );
    }
    verdict(Unknown, Low, vec![format!("source {ip:?} is neither an address nor an AWS service, and the user agent shows no compute")])
}

/// Private IPv4 ranges, shared address space and IPv6 unique local
/// addresses: a call to a public AWS endpoint from one came through a VPC
/// endpoint.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// A GitHub Actions mark in a user agent. Source addresses are not one:
/// GitHub's runners share address ranges with everything else on Azure.
fn github_hint(agent: &str) -> Option<&'static str> {
    let lower = agent.to_ascii_lowercase();
    [("github-actions", "GitHub Actions"), ("github_actions", "GITHUB_ACTIONS"), ("githubactions", "GitHub Actions")]
        .into_iter()
        .find(|(mark, _)| lower.contains(mark))
        .map(|(_, name)| name)
}

/// The repository (and branch) a user agent names: `repo:OWNER/REPO`
/// (optionally `:ref:refs/heads/BRANCH`, the OIDC subject's own form),
/// `GITHUB_REPOSITORY=OWNER/REPO`, `GITHUB_REPOSITORY/OWNER/REPO` or
/// `github.com/OWNER/REPO`; a branch as `refs/heads/BRANCH`.
pub fn github_ref(agent: &str) -> Option<GitHubRef> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let repository = ["repo:", "GITHUB_REPOSITORY=", "GITHUB_REPOSITORY/", "github.com/"].iter().find_map(|marker| {
        let at = agent.find(marker)? + marker.len();
        let rest = &agent[at..];
        let owner_end = rest.find(|c: char| !name_char(c))?;
        let (owner, after) = rest.split_at(owner_end);
        let repo_part = after.strip_prefix('/')?;
        let repo = &repo_part[..repo_part.find(|c: char| !name_char(c)).unwrap_or(repo_part.len())];
        let repo = repo.strip_suffix(".git").unwrap_or(repo);
        (!owner.is_empty() && !repo.is_empty()).then(|| format!("{owner}/{repo}"))
    })?;
    let branch = agent.find("refs/heads/").map(|at| {
        let rest = &agent[at + "refs/heads/".len()..];
        rest[..rest.find(|c: char| !(name_char(c) || c == '/')).unwrap_or(rest.len())].to_owned()
    });
    Some(GitHubRef { repository, branch: branch.filter(|b| !b.is_empty()) })
}

/// Programs that run inside Kubernetes, by their user agent's product name.
fn kubernetes_hint(agent: &str) -> Option<String> {
    const PRODUCTS: &[&str] = &[
        "aws-load-balancer-controller",
        "cluster-autoscaler",
        "karpenter",
        "external-dns",
        "external-secrets",
        "aws-ebs-csi-driver",
        "aws-efs-csi-driver",
        "secrets-store-csi-driver-provider-aws",
        "amazon-vpc-cni-k8s",
    ];
    agent.split_whitespace().find_map(|token| {
        let product = token.split('/').next().unwrap_or(token).to_ascii_lowercase();
        let lower = token.to_ascii_lowercase();
        (PRODUCTS.contains(&product.as_str()) || lower.contains("kubernetes") || lower.split(['/', '#', '-', '_', '.']).any(|w| w == "k8s"))
            .then(|| token.to_owned())
    })
}

/// A desktop operating system in a user agent (`Darwin/23.1.0`,
/// `os/macos`, `Windows_NT`, `os/windows`).
fn desktop_hint(agent: &str) -> Option<&'static str> {
    let lower = agent.to_ascii_lowercase();
    if lower.contains("darwin") || lower.contains("macos") {
        Some("macOS")
    } else if lower.contains("windows") || lower.contains("win32") {
        Some("Windows")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(ip: &str, agent: &str) -> Verdict {
        classify(Seen { source_ip: ip, user_agent: agent, readable: true, vpc_endpoint: None })
    }

    #[test]
    fn exec_env_names_the_compute_for_sure() {
        let v = of("3.1.2.3", "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#5.10.0 exec-env/AWS_Lambda_python3.12");
        assert_eq!((v.compute, v.confidence), (Compute::Lambda, Confidence::High));
        assert_eq!(v.evidence, ["user agent exec-env/AWS_Lambda_python3.12"]);
        assert_eq!(of("10.0.0.1", "aws-cli/2.15.0 exec-env/AWS_ECS_FARGATE").compute, Compute::Ecs);
        assert_eq!(of("10.0.0.1", "aws-cli/2.15.0 exec-env/AWS_ECS_EC2").compute, Compute::Ecs);
        assert_eq!(of("3.1.2.3", "aws-cli/2.15.0 exec-env/CodeBuild").compute, Compute::Codebuild);
        let glue = of("3.1.2.3", "Boto3/1.34 exec-env/AWS_Glue");
        assert_eq!((glue.compute, glue.confidence), (Compute::Unknown, Confidence::Low));
        assert!(glue.evidence[1].contains("AWS_Glue"));
    }

    #[test]
    fn a_service_as_source_is_that_service() {
        assert_eq!(of("lambda.amazonaws.com", "lambda.amazonaws.com").compute, Compute::Lambda);
        assert_eq!(of("codebuild.amazonaws.com", "x").confidence, Confidence::Medium);
        assert_eq!(of("cloudformation.amazonaws.com", "cloudformation.amazonaws.com").compute, Compute::Unknown);
    }

    #[test]
    fn github_actions_needs_a_user_agent_mark_and_takes_the_repository_from_it() {
        let v = of("20.1.2.3", "aws-cli/2.15.0 configure-aws-credentials-for-github-actions repo:acme/deploy-tools:ref:refs/heads/main");
        assert_eq!((v.compute, v.confidence), (Compute::GithubActions, Confidence::High));
        assert_eq!(v.github, Some(GitHubRef { repository: "acme/deploy-tools".into(), branch: Some("main".into()) }));
        let bare = of("20.1.2.3", "aws-cli/2.15.0 GITHUB_ACTIONS");
        assert_eq!((bare.compute, bare.github), (Compute::GithubActions, None));
        assert_eq!(github_ref("x GITHUB_REPOSITORY=acme/app GITHUB_REF=refs/heads/release/1.2").unwrap().branch.as_deref(), Some("release/1.2"));
        assert_eq!(github_ref("x github.com/acme/app.git").unwrap(), GitHubRef { repository: "acme/app".into(), branch: None });
        assert_eq!(of("20.1.2.3", "aws-cli/2.15.0 Python/3.11 Linux/6.5.0-azure").compute, Compute::OutsideAws, "an Azure address is not enough");
    }

    #[test]
    fn kubernetes_programs_are_eks() {
        let v = of("10.0.3.4", "aws-sdk-go/1.44 (go1.20; linux; amd64) aws-load-balancer-controller/v2.6.0");
        assert_eq!((v.compute, v.confidence), (Compute::Eks, Confidence::Medium));
        assert_eq!(of("10.0.3.4", "aws-sdk-go-v2/1.2 os/linux k8s-app/1").compute, Compute::Eks);
        assert_eq!(of("10.0.3.4", "aws-cli/2.15 md/command#eks.update-kubeconfig").compute, Compute::Ec2, "the CLI calling EKS is not in EKS");
    }

    #[test]
    fn a_private_source_or_amazon_linux_is_ec2() {
        let both = of("10.0.1.5", "aws-cli/2.15.0 Python/3.11.6 Linux/5.10.210-201.852.amzn2.x86_64");
        assert_eq!((both.compute, both.confidence, both.evidence.len()), (Compute::Ec2, Confidence::High, 2));
        assert_eq!(of("172.31.4.5", "Boto3/1.34").confidence, Confidence::Medium);
        assert_eq!(of("fd00::5", "Boto3/1.34").compute, Compute::Ec2);
        let amzn = of("54.1.2.3", "aws-cli/2.15.0 os/linux#6.1.0 md/distrib#amzn.2023");
        assert_eq!((amzn.compute, amzn.confidence), (Compute::Ec2, Confidence::Medium));
        let endpoint = classify(Seen { source_ip: "3.1.2.3", user_agent: "Boto3/1.34", readable: true, vpc_endpoint: Some("vpce-0abc") });
        assert_eq!(endpoint.compute, Compute::Ec2);
        assert_eq!(of("10.0.1.9", "aws-sdk-java/2.20 cfg/auth-source#imds").confidence, Confidence::High);
        assert!(endpoint.evidence.iter().any(|e| e.contains("vpce-0abc")));
    }

    #[test]
    fn a_public_source_without_aws_marks_is_outside_aws() {
        let laptop = of("198.51.100.7", "aws-cli/2.15.0 Python/3.11.6 Darwin/23.1.0 exe/x86_64");
        assert_eq!((laptop.compute, laptop.confidence), (Compute::OutsideAws, Confidence::High));
        let server = of("198.51.100.8", "aws-cli/2.15.0 Python/3.11.6 Linux/6.5.0");
        assert_eq!((server.compute, server.confidence), (Compute::OutsideAws, Confidence::Medium));
    }

    #[test]
    fn what_cannot_be_told_is_unknown() {
        assert_eq!(of("AWS Internal", "AWS Internal").compute, Compute::Unknown);
        assert_eq!(of("", "").compute, Compute::Unknown);
        let unread = classify(Seen { source_ip: "", user_agent: "", readable: false, vpc_endpoint: None });
        assert_eq!((unread.compute, unread.confidence), (Compute::Unknown, Confidence::Low));
    }
}
