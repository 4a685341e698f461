"""Municipal counter load: who sends requests to the relay tier, and when.

`municipalities` builds the ~1,741 community servers (CS) with their sizes and
connection caps; `profile` holds the day's shape; `arrivals` turns both into an
open arrival stream of first attempts, in time order.
"""
