"""The streaming rule engine and its rules: pure functions of (reading, state) -> detections."""
