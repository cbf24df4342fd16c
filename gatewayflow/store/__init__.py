"""MongoDB through pymongo: repositories, indexes, and the change feed of the dispatcher."""
