"""The worker side: running a delivered job message through its handler."""
