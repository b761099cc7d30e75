"""The agent console (DESIGN §4): agents log in, see the queue live, take conversations,
reply with the bot's suggestions, tag intents, and hand back or close. Documented in
docs/console.md."""
