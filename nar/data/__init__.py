"""What a recording is, and how its windows reach the train step."""
