"""The local cloud: real emulators wired together like the Google Cloud deployment."""
