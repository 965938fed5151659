package config

import "fmt"

// Slack configures the approvals notifier.
type Slack struct {
	BotTokenFile      string `yaml:"bot_token_file"`      // xoxb-... token
	SigningSecretFile string `yaml:"signing_secret_file"` // verifies interaction callbacks
	APIURL            string `yaml:"api_url"`             // default https://slack.com/api/ (tests point it elsewhere)
	Channel           string `yaml:"channel"`             // default channel for approvals
	// Channels overrides the channel per resource name.
	Channels map[string]string `yaml:"channels"`
	// Users maps Slack users (by the email Slack reports for them) to identities: who may
	// approve is decided by these groups, as for the CLI.
	Users []SlackUser `yaml:"users"`
	// Owners maps requesters (token subjects or names, e.g. a service) to the Slack user
	// ID of the person who owns them, told when a request of theirs is decided, expires or
	// is withdrawn.
	Owners map[string]string `yaml:"owners"`
}

// SlackUser is a Slack user's identity for approvals.
type SlackUser struct {
	Email   string   `yaml:"email"`
	Subject string   `yaml:"subject"`
	Groups  []string `yaml:"groups"`
}

func (sl *Slack) validate(path string, ck *checker) {
	ck.required(path+".bot_token_file", sl.BotTokenFile)
	ck.required(path+".signing_secret_file", sl.SigningSecretFile)
	ck.required(path+".channel", sl.Channel)
	for i, u := range sl.Users {
		if u.Email == "" || u.Subject == "" {
			ck.add(fmt.Sprintf("%s.users[%d]", path, i), "email and subject are required")
		}
	}
}
