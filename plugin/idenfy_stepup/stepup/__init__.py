"""The step-up itself: its records, the outcome table, the request policy, the abuse limits,
the cookie binding a challenge to the browser that started it, and the reuse of a recent face
check."""
