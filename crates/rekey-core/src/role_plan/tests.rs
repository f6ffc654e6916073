use super::*;
use serde_json::{json, Value};

const LAMBDA: &str = "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#5.10.0 lang/python#3.12 exec-env/AWS_Lambda_python3.12";

fn event(ip: &str, agent: &str, source: &str, name: &str) -> PlanEvent {
    PlanEvent {
        time: "2026-11-28T09:00:00Z".parse().unwrap(),
        event_source: source.into(),
        event_name: name.into(),
        region: "eu-west-1".into(),
        source_ip: ip.into(),
        user_agent: agent.into(),
        resources: Vec::new(),
        error_code: None,
        vpc_endpoint_id: None,
        readable: true,
    }
}

fn on(mut e: PlanEvent, arns: &[&str]) -> PlanEvent {
    e.resources = arns.iter().map(|a| (*a).to_owned()).collect();
    e
}

fn plan(events: &[PlanEvent], allowed: &[&str]) -> RolePlan {
    let allowed: Vec<String> = allowed.iter().map(|a| (*a).to_owned()).collect();
    RolePlan::build("123456789012", "app-user", events, &allowed)
}

fn value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

/// The only proposal of a plan of one consumer.
fn only(events: &[PlanEvent]) -> Proposal {
    let p = plan(events, &[]);
    assert_eq!(p.proposals.len(), 1, "{:#?}", p.proposals);
    p.proposals.into_iter().next().unwrap()
}

#[test]
fn each_compute_gets_its_trust_policy() {
    let service = |principal: &str| json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": principal}, "Action": ["sts:AssumeRole"]}]});
    let cases = [
        (LAMBDA, "3.1.2.3", Compute::Lambda, service("lambda.amazonaws.com")),
        ("aws-cli/2.15.0 exec-env/AWS_ECS_FARGATE", "10.0.4.4", Compute::Ecs, service("ecs-tasks.amazonaws.com")),
        ("aws-cli/2.15.0 Linux/5.10.210-201.852.amzn2.x86_64", "10.0.1.5", Compute::Ec2, service("ec2.amazonaws.com")),
        ("aws-cli/2.15.0 exec-env/CodeBuild", "3.1.2.4", Compute::Codebuild, service("codebuild.amazonaws.com")),
    ];
    for (agent, ip, compute, trust) in cases {
        let p = only(&[event(ip, agent, "s3.amazonaws.com", "ListBuckets")]);
        assert_eq!(p.compute, compute);
        assert_eq!(value(&p.trust_policy), trust, "{compute}");
        assert_eq!(p.role_name.as_deref(), Some(format!("app-user-{compute}").as_str()));
    }

    let eks = only(&[event("10.0.3.4", "aws-sdk-go/1.44 external-dns/0.14", "route53.amazonaws.com", "ListHostedZones")]);
    assert_eq!(eks.compute, Compute::Eks);
    assert_eq!(
        value(&eks.trust_policy),
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": ["sts:AssumeRole", "sts:TagSession"]}]})
    );

    let outside = only(&[event("198.51.100.7", "aws-cli/2.15.0 Python/3.11.6 Darwin/23.1.0", "s3.amazonaws.com", "ListBuckets")]);
    assert_eq!(outside.compute, Compute::OutsideAws);
    assert_eq!(
        value(&outside.trust_policy),
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "rolesanywhere.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
            "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/REPLACE_ME_TRUST_ANCHOR_ID"}}}]})
    );

    let github = only(&[event("20.1.2.3", "aws-cli/2.15.0 github-actions repo:acme/deploy:ref:refs/heads/main", "s3.amazonaws.com", "ListBuckets")]);
    assert_eq!(github.compute, Compute::GithubActions);
    assert_eq!(
        value(&github.trust_policy),
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"},
            "Action": ["sts:AssumeRoleWithWebIdentity"],
            "Condition": {"StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                                           "token.actions.githubusercontent.com:sub": "repo:acme/deploy:ref:refs/heads/main"}}}]})
    );

    let unknown = only(&[event("AWS Internal", "AWS Internal", "s3.amazonaws.com", "ListBuckets")]);
    assert_eq!((unknown.compute, unknown.trust_policy, unknown.role_name), (Compute::Unknown, None, None));
}

#[test]
fn github_without_a_repository_gets_a_marked_placeholder() {
    let p = plan(&[event("20.1.2.3", "aws-cli/2.15.0 GITHUB_ACTIONS", "s3.amazonaws.com", "ListBuckets")], &[]);
    let trust = value(&p.proposals[0].trust_policy);
    let sub = &trust["Statement"][0]["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"];
    assert_eq!(sub, "repo:REPLACE_ME_OWNER/REPLACE_ME_REPO:ref:refs/heads/REPLACE_ME_BRANCH");
    assert!(p.warnings.iter().any(|w| w.contains("does not show the GitHub repository") && w.starts_with("app-user-github-actions")));
    let no_branch = plan(&[event("20.1.2.3", "github-actions GITHUB_REPOSITORY=acme/app", "s3.amazonaws.com", "ListBuckets")], &[]);
    let trust = value(&no_branch.proposals[0].trust_policy);
    assert_eq!(trust["Statement"][0]["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"], "repo:acme/app:ref:refs/heads/REPLACE_ME_BRANCH");
}

#[test]
fn permissions_are_exactly_the_actions_seen_sorted_with_their_resources() {
    let ip = "10.0.1.5";
    let agent = "aws-cli/2.15.0 Linux/5.10.210-201.852.amzn2.x86_64";
    let events = [
        event(ip, agent, "s3.amazonaws.com", "ListBuckets"),
        event(ip, agent, "s3.amazonaws.com", "ListBuckets"),
        on(event(ip, agent, "s3.amazonaws.com", "GetBucketPolicy"), &["arn:aws:s3:::reports"]),
        on(event(ip, agent, "s3.amazonaws.com", "GetBucketAcl"), &["arn:aws:s3:::reports"]),
        on(event(ip, agent, "kms.amazonaws.com", "Decrypt"), &["arn:aws:kms:eu-west-1:123456789012:key/k1"]),
        on(event(ip, agent, "kms.amazonaws.com", "Decrypt"), &["arn:aws:kms:eu-west-1:123456789012:key/k2"]),
        // Named resources on an action that takes only "*" are not used.
        on(event(ip, agent, "ec2.amazonaws.com", "DescribeInstances"), &["arn:aws:ec2:eu-west-1:123456789012:instance/i-1"]),
        // One event of the action without a resource: the action takes "*".
        on(event(ip, agent, "sqs.amazonaws.com", "GetQueueAttributes"), &["arn:aws:sqs:eu-west-1:123456789012:jobs"]),
        event(ip, agent, "sqs.amazonaws.com", "GetQueueAttributes"),
        event(ip, agent, "lambda.amazonaws.com", "ListFunctions20150331"),
        event(ip, agent, "lambda.amazonaws.com", "GetFunction20150331v2"),
    ];
    let p = only(&events);
    assert_eq!(
        value(&p.permissions_policy),
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["ec2:DescribeInstances", "lambda:GetFunction", "lambda:ListFunctions", "s3:ListAllMyBuckets", "sqs:GetQueueAttributes"], "Resource": ["*"]},
            {"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": ["arn:aws:kms:eu-west-1:123456789012:key/k1", "arn:aws:kms:eu-west-1:123456789012:key/k2"]},
            {"Effect": "Allow", "Action": ["s3:GetBucketAcl", "s3:GetBucketPolicy"], "Resource": ["arn:aws:s3:::reports"]},
        ]})
    );
    assert_eq!(p.consumers.len(), 1);
    assert_eq!(p.consumers[0].calls, events.len() as u64);
}

#[test]
fn events_without_an_action_are_listed_not_dropped() {
    let agent = "aws-cli/2.15.0 Darwin/23.1.0";
    let events = [
        event("198.51.100.7", agent, "signin.amazonaws.com", "ConsoleLogin"),
        event("198.51.100.7", agent, "s3.amazonaws.com", "NoSuchCall"),
        event("198.51.100.7", agent, "s3.amazonaws.com", "NoSuchCall"),
        event("198.51.100.7", agent, "nosuch.amazonaws.com", "Anything"),
        event("198.51.100.7", agent, "sts.amazonaws.com", "GetCallerIdentity"),
    ];
    let p = only(&events);
    assert_eq!(
        value(&p.unmapped_events),
        json!([
            {"event_source": "nosuch.amazonaws.com", "event_name": "Anything", "calls": 1},
            {"event_source": "s3.amazonaws.com", "event_name": "NoSuchCall", "calls": 2},
            {"event_source": "signin.amazonaws.com", "event_name": "ConsoleLogin", "calls": 1},
        ])
    );
    assert_eq!(p.permissions_policy.statement[0].action, ["sts:GetCallerIdentity"]);
}

#[test]
fn denied_calls_grant_nothing_and_are_said() {
    let mut refused = event("3.1.2.3", LAMBDA, "s3.amazonaws.com", "ListBuckets");
    refused.error_code = Some("AccessDenied".into());
    let mut failed = event("3.1.2.3", LAMBDA, "s3.amazonaws.com", "GetBucketPolicy");
    failed.error_code = Some("NoSuchBucketPolicy".into());
    let p = plan(&[refused, failed], &[]);
    assert_eq!(p.proposals[0].permissions_policy.statement[0].action, ["s3:GetBucketPolicy"], "a failed but allowed call counts");
    assert!(p.warnings.iter().any(|w| w.contains("denied") && w.contains("s3.amazonaws.com ListBuckets (1)")));
}

#[test]
fn consumers_sharing_compute_make_one_proposal() {
    let ec2_cli = "aws-cli/2.15.0 Linux/5.10.210-201.852.amzn2.x86_64";
    let events = [
        // One Lambda program seen from two addresses.
        event("3.1.2.3", LAMBDA, "s3.amazonaws.com", "ListBuckets"),
        event("3.1.2.9", LAMBDA, "dynamodb.amazonaws.com", "DescribeTable"),
        // One host running two programs.
        event("10.0.1.5", ec2_cli, "s3.amazonaws.com", "ListBuckets"),
        event("10.0.1.5", "Boto3/1.34 Linux/5.10.210-201.852.amzn2.x86_64", "sqs.amazonaws.com", "ListQueues"),
        // Another host, another program: another proposal.
        event("10.0.7.7", "cron-job/1.0", "ec2.amazonaws.com", "DescribeInstances"),
    ];
    let p = plan(&events, &[]);
    let summary: Vec<(Compute, Option<&str>, usize)> = p.proposals.iter().map(|p| (p.compute, p.role_name.as_deref(), p.consumers.len())).collect();
    assert_eq!(
        summary,
        [(Compute::Lambda, Some("app-user-lambda"), 2), (Compute::Ec2, Some("app-user-ec2-1"), 2), (Compute::Ec2, Some("app-user-ec2-2"), 1)]
    );
    assert_eq!(p.proposals[0].permissions_policy.statement[0].action, ["dynamodb:DescribeTable", "s3:ListAllMyBuckets"]);
    assert_eq!(p.proposals[2].confidence, Confidence::Medium, "a private address, no more");
}

#[test]
fn unreadable_events_are_an_unknown_consumer_with_their_actions() {
    let mut e = event("", "", "s3.amazonaws.com", "ListBuckets");
    e.readable = false;
    let p = plan(&[e, event("3.1.2.3", LAMBDA, "s3.amazonaws.com", "ListBuckets")], &[]);
    let unknown = p.proposals.iter().find(|p| p.compute == Compute::Unknown).unwrap();
    assert_eq!((unknown.confidence, unknown.consumers.len()), (Confidence::Low, 1));
    assert_eq!(unknown.permissions_policy.statement[0].action, ["s3:ListAllMyBuckets"]);
    assert!(p.warnings.iter().any(|w| w.contains("left out of the CloudFormation and Terraform output")));
}

#[test]
fn allowed_not_seen_lists_named_actions_and_the_data_events_of_wildcards() {
    let events = [
        event("3.1.2.3", LAMBDA, "s3.amazonaws.com", "ListBuckets"),
        on(event("3.1.2.3", LAMBDA, "s3.amazonaws.com", "GetObject"), &["arn:aws:s3:::b/k"]),
    ];
    let p = plan(&events, &["s3:*", "dynamodb:Get*", "iam:CreateAccessKey", "s3:ListAllMyBuckets", "lambda:InvokeFunction", "nosuch:Thing"]);
    let not_seen = &p.proposals[0].allowed_not_seen;
    assert!(not_seen.contains(&"s3:PutObject".to_owned()), "a data event through s3:*");
    assert!(not_seen.contains(&"s3:ListBucket".to_owned()));
    assert!(!not_seen.contains(&"s3:GetObject".to_owned()), "seen");
    assert!(!not_seen.contains(&"s3:ListAllMyBuckets".to_owned()), "seen, though named");
    assert!(!not_seen.contains(&"s3:PutBucketPolicy".to_owned()), "a management action through a wildcard");
    assert!(!not_seen.contains(&"dynamodb:GetResourcePolicy".to_owned()), "a management action through a wildcard");
    assert!(not_seen.contains(&"dynamodb:GetItem".to_owned()));
    assert!(not_seen.contains(&"iam:CreateAccessKey".to_owned()), "named exactly: listed though a management action");
    assert!(not_seen.contains(&"lambda:InvokeFunction".to_owned()));
    let mut sorted = not_seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(&sorted, not_seen);
    assert!(p.warnings.iter().any(|w| w.contains("nosuch:Thing matches no action")));
    assert!(p.warnings.iter().any(|w| w.contains("through wildcards (s3:*, dynamodb:Get*)")));
    assert!(!p.warnings.iter().any(|w| w.contains("do not allow")), "everything seen is allowed");

    let narrow = plan(&events, &["s3:GetObject"]);
    assert!(narrow.warnings.iter().any(|w| w.contains("seen calling s3:ListAllMyBuckets which the given policies do not allow")));
    let unknown = plan(&events, &[]);
    assert!(unknown.proposals[0].allowed_not_seen.is_empty());
    assert!(unknown.warnings.iter().any(|w| w.contains("policies were not given")));
}

#[test]
fn many_resources_of_one_action_take_a_wildcard() {
    let events: Vec<PlanEvent> = (0..=MAX_ARNS)
        .map(|i| on(event("3.1.2.3", LAMBDA, "kms.amazonaws.com", "Decrypt"), &[&format!("arn:aws:kms:eu-west-1:123456789012:key/k{i}")]))
        .collect();
    let p = plan(&events, &[]);
    assert_eq!(p.proposals[0].permissions_policy.statement[0].resource.as_deref(), Some(&["*".to_owned()][..]));
    assert!(p.warnings.iter().any(|w| w.contains("kms:Decrypt was called on 11 resources")));
}

#[test]
fn the_json_has_the_spec_shape() {
    let p = plan(&[event("10.0.2.9", LAMBDA, "s3.amazonaws.com", "ListBuckets")], &["s3:GetObject"]);
    let v: Value = serde_json::from_str(&p.to_json()).unwrap();
    assert_eq!((v["account_id"].as_str(), v["user_name"].as_str()), (Some("123456789012"), Some("app-user")));
    assert!(v["warnings"].as_array().unwrap().iter().any(|w| w == DATA_EVENTS_WARNING), "what history cannot show is stated");
    let proposal = &v["proposals"][0];
    let keys: Vec<&str> = proposal.as_object().unwrap().keys().map(String::as_str).collect();
    for key in ["compute", "confidence", "evidence", "consumers", "trust_policy", "permissions_policy", "unmapped_events", "allowed_not_seen"] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert_eq!(proposal["compute"], "lambda");
    assert_eq!(proposal["confidence"], "high");
    assert_eq!(proposal["evidence"], json!(["user agent exec-env/AWS_Lambda_python3.12"]));
    assert_eq!(proposal["consumers"][0]["source_ip"], "10.0.2.9");
    assert_eq!(proposal["consumers"][0]["user_agent"], LAMBDA);
    assert_eq!(proposal["consumers"][0]["calls"], 1);
    assert_eq!(proposal["trust_policy"]["Version"], "2012-10-17");
    assert_eq!(proposal["permissions_policy"]["Statement"][0]["Action"], json!(["s3:ListAllMyBuckets"]));
    assert_eq!(proposal["unmapped_events"], json!([]));
    assert_eq!(proposal["allowed_not_seen"], json!(["s3:GetObject"]));
    assert!(p.to_json().find("\"Version\"").unwrap() < p.to_json().find("\"Statement\"").unwrap(), "IAM's key order");
}

#[test]
fn the_output_does_not_depend_on_the_order_of_events() {
    let events = vec![
        event("3.1.2.3", LAMBDA, "s3.amazonaws.com", "ListBuckets"),
        on(event("10.0.1.5", "aws-cli/2 amzn2", "kms.amazonaws.com", "Decrypt"), &["arn:aws:kms:eu-west-1:123456789012:key/b", "arn:aws:kms:eu-west-1:123456789012:key/a"]),
        event("198.51.100.7", "aws-cli/2 Darwin/23", "iam.amazonaws.com", "ListUsers"),
        event("20.1.2.3", "github-actions", "ecr.amazonaws.com", "GetAuthorizationToken"),
        event("10.0.1.5", "Boto3/1 amzn2", "signin.amazonaws.com", "ConsoleLogin"),
    ];
    let allowed = ["s3:*", "kms:Decrypt"];
    let first = plan(&events, &allowed);
    let mut reversed = events.clone();
    reversed.reverse();
    let second = plan(&reversed, &allowed);
    assert_eq!(first.to_json(), second.to_json());
    assert_eq!(first.to_text(), second.to_text());
    assert_eq!(first.to_cloudformation(), second.to_cloudformation());
    assert_eq!(first.to_terraform(), second.to_terraform());
}

#[test]
fn text_names_each_proposal_its_trust_permissions_and_gaps() {
    let p = plan(
        &[event("3.1.2.3", LAMBDA, "s3.amazonaws.com", "ListBuckets"), event("3.1.2.3", LAMBDA, "signin.amazonaws.com", "ConsoleLogin")],
        &["s3:GetObject"],
    );
    let text = p.to_text();
    for part in [
        "Roles to replace the access keys of IAM user app-user in account 123456789012: 1 proposal",
        "1. lambda, high confidence: role app-user-lambda",
        "why: user agent exec-env/AWS_Lambda_python3.12",
        "3.1.2.3  Boto3/1.34.0",
        "2 calls, last 2026-11-28T09:00:00Z",
        "trust: Service lambda.amazonaws.com may sts:AssumeRole",
        "s3:ListAllMyBuckets on *",
        "events that map to no IAM action: signin.amazonaws.com ConsoleLogin (1)",
        "allowed today, not seen:\n     s3:GetObject\n",
        "Warnings:",
    ] {
        assert!(text.contains(part), "{part:?} not in:\n{text}");
    }
    let github = plan(&[event("20.1.2.3", "github-actions repo:acme/app:ref:refs/heads/main", "s3.amazonaws.com", "ListBuckets")], &[]).to_text();
    let trust = "trust: Federated arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com may sts:AssumeRoleWithWebIdentity \
                 when StringEquals token.actions.githubusercontent.com:aud = sts.amazonaws.com \
                 and StringEquals token.actions.githubusercontent.com:sub = repo:acme/app:ref:refs/heads/main";
    assert!(github.contains(trust), "{github}");
}

#[test]
fn deployment_formats_hold_one_role_per_proposal_with_a_trust_policy() {
    let events = [
        event("3.1.2.3", LAMBDA, "s3.amazonaws.com", "ListBuckets"),
        event("10.0.1.5", "aws-cli/2 amzn2", "s3.amazonaws.com", "ListBuckets"),
        event("20.1.2.3", "github-actions", "s3.amazonaws.com", "ListBuckets"),
        event("AWS Internal", "AWS Internal", "s3.amazonaws.com", "ListBuckets"),
    ];
    let p = plan(&events, &[]);
    let cfn: Value = serde_json::from_str(&p.to_cloudformation()).unwrap();
    let types: Vec<(&str, &str)> = cfn["Resources"].as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v["Type"].as_str().unwrap())).collect();
    assert_eq!(
        types,
        [
            ("Ec2InstanceProfile", "AWS::IAM::InstanceProfile"),
            ("Ec2Role", "AWS::IAM::Role"),
            ("GitHubOidcProvider", "AWS::IAM::OIDCProvider"),
            ("GithubActionsRole", "AWS::IAM::Role"),
            ("LambdaRole", "AWS::IAM::Role"),
        ]
    );
    let federated = &cfn["Resources"]["GithubActionsRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Federated"];
    assert_eq!(federated["Fn::If"][0], "CreateGitHubOidc");
    let tf = p.to_terraform();
    assert_eq!(tf.matches("resource \"aws_iam_role\" ").count(), 3);
    assert_eq!(tf.matches("resource \"aws_iam_role_policy\" ").count(), 3);
    assert!(tf.contains("resource \"aws_iam_instance_profile\" \"ec2\""));
    assert!(tf.contains("depends_on         = [aws_iam_openid_connect_provider.github]"));
}
