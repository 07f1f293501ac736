"""Pusher Channels compatibility: the rules of Pusher's protocols, free of I/O."""
