"""The scheduler wrapper and the features meeting in the service layer."""
