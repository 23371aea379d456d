"""Reading the log as it grows: live streams (SSE) and sinks."""
