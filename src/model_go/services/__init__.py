"""Operations shared by the CLI, the API, the dashboard and webhooks, with their validation."""
