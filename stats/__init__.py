"""The read side of the operations-center screens: the map, counters, trends, the assessment table.

Every function reads with SQL over what the other parts write (registry, alarms, tickets, device
state, silences, rosters) and returns frozen values the API makes its shapes from. Each takes the
caller's scope as a keyword (`grids`: the grid ids the caller may see, None for all), so role
scoping is wired in by the API without changing the SQL.
"""
